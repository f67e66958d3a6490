"""DenseNet-BC for CIFAR. Pixel space [0, 1] in."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Normalize, batch_norm, classifier_head, scaled


class DenseNet(nn.Module):
  """DenseNet-BC (Huang et al.), CIFAR stem; growth 32, compression 0.5."""
  blocks: Sequence[int] = (6, 12, 24, 16)
  growth: int = 32
  num_classes: int = 10
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    g = scaled(self.growth, self.width)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    x = conv(2 * g, (3, 3), padding=1)(Normalize()(x).astype(self.dtype))
    for i, n in enumerate(self.blocks):
      for _ in range(n):
        h = conv(4 * g, (1, 1))(nn.relu(batch_norm(train, self.dtype)(x)))
        h = conv(g, (3, 3), padding=1)(nn.relu(batch_norm(train, self.dtype)(h)))
        x = jnp.concatenate([h, x], -1)
      if i < len(self.blocks) - 1:
        x = conv(x.shape[-1] // 2, (1, 1))(nn.relu(batch_norm(train, self.dtype)(x)))
        x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(batch_norm(train, self.dtype)(x))
    return classifier_head(self, x)
