"""A small CNN for digits and CPU tests (the shipped ``cnn`` / ``cnn_small`` assets). Pixel space [0, 1] in."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Conv, Normalize, batch_norm, classifier_head


class SimpleCNN(nn.Module):
  """conv-BN-ReLU ×2 per stage with max-pooling, then a linear head; for digits and CPU tests."""
  num_classes: int = 10
  widths: Sequence[int] = (32, 64)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Normalize((0.5,), (0.5,))(x).astype(self.dtype)
    for w in self.widths:
      for _ in range(2):
        x = Conv(w, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(batch_norm(train, self.dtype)(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    return classifier_head(self, x)
