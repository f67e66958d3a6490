"""Vision Transformers, pixel space [0, 1] in: ``ViT`` with a CIFAR patch size, and ``TimmViT`` in timm's layout
(ViT-Ti/S/B at 224 with patch 16, the classifier of Carlini et al.'s denoised smoothing)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.models.layers import MLP, Normalize, attention


class ViT(nn.Module):
  """Vision Transformer (Dosovitskiy et al.) with a CIFAR patch size; pre-norm blocks, CLS token."""
  num_classes: int = 10
  patch: int = 4
  dim: int = 384
  depth: int = 12
  heads: int = 6
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Normalize()(x).astype(self.dtype)
    x = nn.Conv(self.dim, (self.patch, self.patch), self.patch, dtype=self.dtype)(x)
    b = x.shape[0]
    x = x.reshape(b, -1, self.dim)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)).astype(x.dtype), x], 1)
    x = x + self.param("pos", nn.initializers.normal(0.02), x.shape[1:]).astype(x.dtype)
    for _ in range(self.depth):
      x = x + nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
      x = x + MLP(self.dim * self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
    x = nn.LayerNorm(dtype=self.dtype)(x[:, 0])
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class _TimmBlock(nn.Module):
  """timm's pre-norm ViT block: x + attn(norm1(x)), then x + mlp(norm2(x)); fused qkv, exact GELU."""
  dim: int
  heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, n, d = x.shape
    hd = d // self.heads
    ln = lambda name: nn.LayerNorm(1e-6, dtype=jnp.float32, name=name)
    h = ln("norm1")(x).astype(self.dtype)
    qkv = nn.Dense(3 * d, dtype=self.dtype, name="qkv")(h).reshape(b, n, 3, self.heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    x = x + nn.Dense(d, dtype=self.dtype, name="proj")(attention(q, k, v, hd ** -0.5).reshape(b, n, d))
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(ln("norm2")(x).astype(self.dtype))
    return x + nn.Dense(d, dtype=self.dtype, name="fc2")(nn.gelu(h, approximate=False))


class TimmViT(nn.Module):
  """Vision Transformer in timm's ``VisionTransformer`` layout (class token, learned position embedding over
  class token + patches, pre-norm blocks, final LayerNorm, linear head on the class token), so timm / HF checkpoints
  import one to one (``convert.timm``). Pixel space [0, 1] in, [N, S, S, C] at any S: images are resized
  (``resize``, bilinear by default, as torch's ``interpolate(align_corners=False)``) to ``resolution`` first, as
  Carlini et al. feed 32 × 32 CIFAR-10 images to a ViT-B/16 at 224, then normalised with ``mean`` / ``std``."""
  num_classes: int = 10
  resolution: int = 224
  patch: int = 16
  dim: int = 768
  depth: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  mean: tuple = (0.5, 0.5, 0.5)
  std: tuple = (0.5, 0.5, 0.5)
  resize: str = "bilinear"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, s, _, c = x.shape
    if s != self.resolution:
      x = jax.image.resize(x, (b, self.resolution, self.resolution, c), self.resize, antialias=False)
    x = Normalize(self.mean, self.std)(x).astype(self.dtype)
    x = nn.Conv(self.dim, (self.patch, self.patch), self.patch, padding="VALID", dtype=self.dtype,
                name="patch_embed")(x).reshape(b, -1, self.dim)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)).astype(x.dtype), x], 1)
    x = (x + self.param("pos_embed", nn.initializers.normal(0.02), (1,) + x.shape[1:])).astype(jnp.float32)
    for i in range(self.depth):
      x = _TimmBlock(self.dim, self.heads, self.mlp_dim, self.dtype, name=f"blocks_{i}")(x).astype(jnp.float32)
    x = nn.LayerNorm(1e-6, dtype=jnp.float32, name="norm")(x[:, 0])
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x.astype(self.dtype)).astype(jnp.float32)
