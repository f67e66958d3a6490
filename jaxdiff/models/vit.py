"""Vision Transformer with a CIFAR patch size. Pixel space [0, 1] in."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import MLP, Normalize


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
