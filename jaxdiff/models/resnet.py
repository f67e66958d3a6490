"""CIFAR ResNets (pytorch-cifar layout: 3×3 stem, four stages) and Wide-ResNets. Pixel space [0, 1] in."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Conv, Normalize, batch_norm, classifier_head, scaled


class BasicBlock(nn.Module):
  ch: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    h = nn.relu(batch_norm(train, self.dtype)(conv(self.ch, (3, 3), self.stride, padding=1)(x)))
    h = batch_norm(train, self.dtype)(conv(self.ch, (3, 3), padding=1)(h))
    if self.stride != 1 or x.shape[-1] != self.ch:
      x = batch_norm(train, self.dtype)(conv(self.ch, (1, 1), self.stride)(x))
    return nn.relu(h + x)


class Bottleneck(nn.Module):
  ch: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    out = self.ch * 4
    h = nn.relu(batch_norm(train, self.dtype)(conv(self.ch, (1, 1))(x)))
    h = nn.relu(batch_norm(train, self.dtype)(conv(self.ch, (3, 3), self.stride, padding=1)(h)))
    h = batch_norm(train, self.dtype)(conv(out, (1, 1))(h))
    if self.stride != 1 or x.shape[-1] != out:
      x = batch_norm(train, self.dtype)(conv(out, (1, 1), self.stride)(x))
    return nn.relu(h + x)


class ResNet(nn.Module):
  """CIFAR ResNet (He et al.; the kuangliu/pytorch-cifar layout: 3×3 stem, four stages)."""
  block: Any
  stages: Sequence[int]
  num_classes: int = 10
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Normalize()(x).astype(self.dtype)
    x = Conv(scaled(64, self.width), (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(batch_norm(train, self.dtype)(x))
    for i, n in enumerate(self.stages):
      for j in range(n):
        x = self.block(scaled(64 * 2 ** i, self.width), 2 if (i > 0 and j == 0) else 1, self.dtype)(x, train)
    return classifier_head(self, x)


class WideBlock(nn.Module):
  """Pre-activation wide block (Zagoruyko & Komodakis)."""
  ch: int
  stride: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    h = conv(self.ch, (3, 3), padding=1)(nn.relu(batch_norm(train, self.dtype)(x)))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(self.ch, (3, 3), self.stride, padding=1)(nn.relu(batch_norm(train, self.dtype)(h)))
    if self.stride != 1 or x.shape[-1] != self.ch:
      x = conv(self.ch, (1, 1), self.stride)(x)
    return h + x


class WideResNet(nn.Module):
  depth: int = 28
  widen: int = 10
  num_classes: int = 10
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    n = (self.depth - 4) // 6
    x = Normalize()(x).astype(self.dtype)
    x = Conv(16, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    for i, ch in enumerate((16 * self.widen, 32 * self.widen, 64 * self.widen)):
      for j in range(n):
        x = WideBlock(ch, 2 if (i > 0 and j == 0) else 1, self.dropout, self.dtype)(x, train)
    x = nn.relu(batch_norm(train, self.dtype)(x))
    return classifier_head(self, x)
