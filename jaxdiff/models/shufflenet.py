"""ShuffleNetV2 for CIFAR. Pixel space [0, 1] in."""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Normalize, batch_norm, classifier_head, scaled


def _shuffle(x, groups=2):
  b, h, w, c = x.shape
  return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


class _ShuffleUnit(nn.Module):
  out: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    bn = lambda y: batch_norm(train, self.dtype)(y)
    half = self.out // 2

    def branch(y, ch):
      y = nn.relu(bn(conv(ch, (1, 1))(y)))
      y = bn(conv(ch, (3, 3), self.stride, padding=1, feature_group_count=ch)(y))
      return nn.relu(bn(conv(ch, (1, 1))(y)))

    if self.stride == 1:
      a, b = jnp.split(x, 2, axis=-1)
      return _shuffle(jnp.concatenate([a, branch(b, b.shape[-1])], -1))
    c_in = x.shape[-1]
    left = bn(conv(c_in, (3, 3), 2, padding=1, feature_group_count=c_in)(x))
    left = nn.relu(bn(conv(half, (1, 1))(left)))
    return _shuffle(jnp.concatenate([left, branch(x, half)], -1))


class ShuffleNetV2(nn.Module):
  num_classes: int = 10
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = lambda ch: 2 * scaled(ch // 2, self.width)
    x = Normalize()(x).astype(self.dtype)
    x = nn.relu(batch_norm(train, self.dtype)(nn.Conv(24, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)))
    for out, n in ((116, 3), (232, 7), (464, 3)):
      for j in range(n + 1):
        x = _ShuffleUnit(c(out), 2 if j == 0 else 1, self.dtype)(x, train)
    x = nn.Conv(c(1024), (1, 1), use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(batch_norm(train, self.dtype)(x))
    return classifier_head(self, x)
