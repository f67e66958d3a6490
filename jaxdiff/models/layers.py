"""Layers the classifier families share: input normalisation, BatchNorm, width scaling, the linear head."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
  """(x − mean)/std per channel; pixel space [0, 1] in. Channel counts other than len(mean) use 0.5/0.5."""
  mean: Sequence[float] = CIFAR_MEAN
  std: Sequence[float] = CIFAR_STD

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    mean = jnp.asarray(self.mean if len(self.mean) == c else (0.5,) * c)
    std = jnp.asarray(self.std if len(self.std) == c else (0.5,) * c)
    return (x - mean) / std


def batch_norm(train, dtype, **kw):
  """BatchNorm with PyTorch's defaults (momentum 0.1 ⇔ flax 0.9, ε 1e-5); stats in 'batch_stats'."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, **kw)


def scaled(ch, width):
  """Channel count ``ch`` scaled by ``width`` (at least 4): digits-size CPU variants of the CIFAR nets."""
  return max(4, int(round(ch * width)))


def classifier_head(module, x):
  """Global average pooling over H, W, then a linear layer to ``module.num_classes``: fp32 logits [B, K].
  Call inside ``module``'s ``nn.compact`` method. The pooled features [B, D] are sown as
  ``intermediates/features`` (see ``penultimate_features``)."""
  pooled = jnp.mean(x, axis=(1, 2))
  module.sow("intermediates", "features", pooled.astype(jnp.float32))
  return nn.Dense(module.num_classes, dtype=module.dtype)(pooled).astype(jnp.float32)


def penultimate_features(module, variables, x):
  """[B, D] pooled features before a classifier's linear head (e.g. for FID on small datasets), eval mode."""
  _, state = module.apply(variables, x, mutable=["intermediates"])
  return state["intermediates"]["features"][0]


class _MLP(nn.Module):
  """Transformer MLP: Dense(hidden) → GELU → Dense(input width)."""
  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    return nn.Dense(d, dtype=self.dtype)(nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x)))


MLP = _MLP  # the class keeps its old name: flax names parameters after it ("_MLP_0") in saved ViT/Swin exports
