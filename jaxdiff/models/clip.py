"""CLIP's image tower (Radford et al. 2021), ViT-B/32 by default, in the layout of transformers'
``CLIPVisionModelWithProjection`` (pre-LN blocks with quick-GELU, class token, ``post_layernorm`` on it, a bias-free
projection). Input: CLIP-normalised images [N, S, S, 3] at ``image_size``; output: image embeddings [N, embed_dim].
``clip_preprocess`` maps pixel-space [0, 1] images of any size and 1 or 3 channels to that input."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.models.layers import attention

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
  image_size: int = 224
  patch_size: int = 32
  width: int = 768
  layers: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  embed_dim: int = 512
  eps: float = 1e-5


class _Layer(nn.Module):
  cfg: CLIPVisionConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    b, n, w = x.shape
    hd = w // c.heads
    h = nn.LayerNorm(c.eps, name="layer_norm1")(x)
    split = lambda name: nn.Dense(w, name=name)(h).reshape(b, n, c.heads, hd)
    q, k, v = split("q_proj"), split("k_proj"), split("v_proj")
    x = x + nn.Dense(w, name="out_proj")(attention(q, k, v, hd ** -0.5).reshape(b, n, w))
    h = nn.Dense(c.mlp_dim, name="fc1")(nn.LayerNorm(c.eps, name="layer_norm2")(x))
    return x + nn.Dense(w, name="fc2")(h * jax.nn.sigmoid(1.702 * h))  # quick-GELU


class CLIPVision(nn.Module):
  """CLIP image encoder: normalised images [N, S, S, 3] → embeddings [N, embed_dim] (not unit-normalised)."""
  cfg: CLIPVisionConfig = CLIPVisionConfig()

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=c.patch_size, padding="VALID", use_bias=False,
                name="patch_embedding")(x)
    b = x.shape[0]
    x = x.reshape(b, -1, c.width)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (c.width,))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.width)), x], axis=1)
    x = x + self.param("position_embedding", nn.initializers.normal(0.02), (x.shape[1], c.width))
    x = nn.LayerNorm(c.eps, name="pre_layrnorm")(x)
    for i in range(c.layers):
      x = _Layer(c, name=f"layers_{i}")(x)
    pooled = nn.LayerNorm(c.eps, name="post_layernorm")(x[:, 0])
    return nn.Dense(c.embed_dim, use_bias=False, name="visual_projection")(pooled)


def clip_preprocess(images, image_size=224):
  """Pixel [0, 1] images [N, H, W, 1 or 3] → CLIP's input: resized (bicubic) to ``image_size``², grey repeated to
  three channels, normalised by CLIP's mean and std. Differentiable (BBTI backpropagates through it)."""
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (image_size, image_size):
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, 3), "bicubic")
  return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)
