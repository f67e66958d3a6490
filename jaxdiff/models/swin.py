"""Swin Transformer sized for CIFAR. Pixel space [0, 1] in."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.layers import MLP, Normalize, classifier_head


def _windows(x, w):
  b, h, wd, c = x.shape
  x = x.reshape(b, h // w, w, wd // w, w, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, w * w, c)


def _unwindows(x, w, b, h, wd):
  c = x.shape[-1]
  return x.reshape(b, h // w, wd // w, w, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, wd, c)


class _WindowAttention(nn.Module):
  heads: int
  window: int
  dtype: Any

  @nn.compact
  def __call__(self, x, mask):
    n, t, c = x.shape
    hd = c // self.heads
    qkv = nn.Dense(3 * c, dtype=self.dtype)(x).reshape(n, t, 3, self.heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    w = self.window
    table = self.param("rel_bias", nn.initializers.normal(0.02), ((2 * w - 1) ** 2, self.heads))
    coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (w - 1)
    bias = table[rel[..., 0] * (2 * w - 1) + rel[..., 1]].transpose(2, 0, 1)  # [heads, t, t]
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(hd) + bias
    if mask is not None:
      logits = logits.reshape(-1, mask.shape[0], self.heads, t, t) + mask[None, :, None]
      logits = logits.reshape(n, self.heads, t, t)
    a = jax.nn.softmax(logits, -1).astype(self.dtype)
    return nn.Dense(c, dtype=self.dtype)(jnp.einsum("nhqk,nkhd->nqhd", a, v).reshape(n, t, c))


class _SwinBlock(nn.Module):
  heads: int
  window: int
  shift: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    win, shift = min(self.window, h), (self.shift if self.window < h else 0)
    y = nn.LayerNorm(dtype=self.dtype)(x)
    mask = None
    if shift:
      y = jnp.roll(y, (-shift, -shift), (1, 2))
      region = np.zeros((h, w), np.int32)
      cuts = (slice(0, -win), slice(-win, -shift), slice(-shift, None))
      for i, hs in enumerate(cuts):
        for j, ws in enumerate(cuts):
          region[hs, ws] = 3 * i + j
      rw = _windows(jnp.asarray(region)[None, ..., None], win)[..., 0]  # [nW, t]
      mask = jnp.where(rw[:, :, None] != rw[:, None, :], -1e9, 0.0)
    y = _unwindows(_WindowAttention(self.heads, win, self.dtype)(_windows(y, win), mask), win, b, h, w)
    if shift:
      y = jnp.roll(y, (shift, shift), (1, 2))
    x = x + y
    return x + MLP(4 * c, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))


class Swin(nn.Module):
  """Swin Transformer (Liu et al.) sized for CIFAR: patch 2, window 4, Swin-T depths/heads."""
  num_classes: int = 10
  patch: int = 2
  window: int = 4
  dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  heads: Sequence[int] = (3, 6, 12, 24)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Normalize()(x).astype(self.dtype)
    x = nn.LayerNorm(dtype=self.dtype)(nn.Conv(self.dim, (self.patch,) * 2, self.patch, dtype=self.dtype)(x))
    for i, (d, nh) in enumerate(zip(self.depths, self.heads)):
      if i:  # patch merging: 2×2 neighbourhood → 2c channels
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        x = nn.Dense(2 * c, use_bias=False, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
      for j in range(d):
        x = _SwinBlock(nh, self.window, self.window // 2 if j % 2 else 0, self.dtype)(x)
    x = nn.LayerNorm(dtype=self.dtype)(x)
    return classifier_head(self, x)
