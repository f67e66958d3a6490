"""DLA-34 (Yu et al.), the pytorch-cifar layout. Pixel space [0, 1] in."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Normalize, batch_norm, classifier_head, scaled
from jaxdiff.models.resnet import BasicBlock


class _Root(nn.Module):
  ch: int
  dtype: Any

  @nn.compact
  def __call__(self, xs, train):
    x = nn.Conv(self.ch, (1, 1), use_bias=False, dtype=self.dtype)(jnp.concatenate(xs, -1))
    return nn.relu(batch_norm(train, self.dtype)(x))


class _Tree(nn.Module):
  """Hierarchical deep aggregation tree (Yu et al.), the pytorch-cifar DLA layout."""
  ch: int
  level: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    if self.level == 1:
      a = BasicBlock(self.ch, self.stride, self.dtype)(x, train)
      b = BasicBlock(self.ch, 1, self.dtype)(a, train)
      return _Root(self.ch, self.dtype)([a, b], train)
    xs = [BasicBlock(self.ch, self.stride, self.dtype)(x, train)]  # prev_root
    for i in reversed(range(1, self.level)):
      x = _Tree(self.ch, i, self.stride, self.dtype)(x, train)
      xs.append(x)
    a = BasicBlock(self.ch, 1, self.dtype)(x, train)
    b = BasicBlock(self.ch, 1, self.dtype)(a, train)
    return _Root(self.ch, self.dtype)(xs + [a, b], train)


class DLA(nn.Module):
  num_classes: int = 10
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = lambda ch: scaled(ch, self.width)
    x = Normalize()(x).astype(self.dtype)
    for ch in (16, 16, 32):
      x = nn.Conv(c(ch), (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(batch_norm(train, self.dtype)(x))
    for ch, level, stride in ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 1, 2)):
      x = _Tree(c(ch), level, stride, self.dtype)(x, train)
    return classifier_head(self, x)
