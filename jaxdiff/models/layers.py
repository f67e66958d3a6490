"""Layers the model families share: input normalisation, BatchNorm, GroupNorm, width scaling, the linear head."""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

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


_NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_nhwc(x, kernel, strides, padding):
  """2-D convolution, x [B, H, W, C_in] NHWC, kernel [kh, kw, C_in, C_out] HWIO, symmetric integer ``padding``.
  The same function and gradients as ``lax.conv_general_dilated``; the input gradient convolves with the flipped,
  transposed kernel *materialised* in HWIO. JAX's own rule expresses that transpose in the convolution's dimension
  labels (kernel O×I), which XLA:CPU runs on a slow fallback inside loops (a 3×3 convolution of 8×16²×32 in a
  ``lax.scan``: 13 ms per step vs 0.4 ms) — every backward through a sampler's scan or an attack's loop."""
  return lax.conv_general_dilated(x, kernel, strides, [(padding, padding)] * 2, dimension_numbers=_NHWC)


def _conv_fwd(x, kernel, strides, padding):
  return conv_nhwc(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  pads = [(k - 1 - padding, k - 1 - padding + (n + 2 * padding - k) % s)
          for k, n, s in zip((kh, kw), x.shape[1:3], strides)]
  flipped = lax.optimization_barrier(jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3))  # HWIO of the transpose
  dx = lax.conv_general_dilated(g, flipped, (1, 1), pads, lhs_dilation=strides, dimension_numbers=_NHWC)
  _, vjp_kernel = jax.vjp(lambda k: lax.conv_general_dilated(x, k, strides, [(padding, padding)] * 2,
                                                             dimension_numbers=_NHWC), kernel)
  return dx.astype(x.dtype), vjp_kernel(g)[0]


conv_nhwc.defvjp(_conv_fwd, _conv_bwd)


class Conv(nn.Module):
  """``nn.Conv`` for NHWC images with integer ``padding`` (parameters ``kernel`` HWIO and ``bias``, fp32; compute in
  ``dtype``) through ``conv_nhwc``, whose input gradient XLA:CPU runs fast inside loops."""
  features: int
  kernel_size: Sequence[int]
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel_size, x.shape[-1], self.features),
                        jnp.float32)
    y = conv_nhwc(x.astype(self.dtype), kernel.astype(self.dtype), (self.strides,) * 2, self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
    return y


class GroupNorm(nn.Module):
  """GroupNorm of NHWC feature maps (Wu & He 2018) in fp32; parameters ``scale``/``bias`` [C] as flax's
  ``nn.GroupNorm``, and the same function (variance E[x²] − E[x]², flax's fast variance). Built for XLA:CPU: the
  group statistics come from per-channel sums over H, W (one fused pass) and the normalisation is one affine map
  per (image, channel); flax's strided reduction over (H, W, C/G) is 2–3× slower there (bench suite ``ops``)."""
  num_groups: int
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    b, c = x.shape[0], x.shape[-1]
    per_group = c // self.num_groups
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    x = x.astype(jnp.float32)
    axes = tuple(range(1, x.ndim - 1))
    n = per_group * math.prod(x.shape[1:-1])
    mean = jnp.sum(x, axes).reshape(b, self.num_groups, per_group).sum(-1) / n
    mean_sq = jnp.sum(x * x, axes).reshape(b, self.num_groups, per_group).sum(-1) / n
    inv = jax.lax.rsqrt(jnp.maximum(mean_sq - mean * mean, 0.0) + self.epsilon)
    a = scale * jnp.repeat(inv, per_group, -1)  # [B, C]
    shift = bias - jnp.repeat(mean, per_group, -1) * a
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    return x * a.reshape(shape) + shift.reshape(shape)


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


def attention(q, k, v, scale=None):
  """Multi-head scaled dot-product attention, softmax(q·kᵀ·scale)·v per head (Vaswani et al., Eq. 1).

  ``q`` [B, T, H, D], ``k`` and ``v`` [B, S, H, D], one dtype (bf16 allowed); ``scale`` defaults to 1/√D. Returns
  [B, T, H, D] in that dtype; the logits and the softmax statistics are fp32. ``jax.nn.dot_product_attention`` with
  ``implementation=None``: cuDNN's fused kernel where the shapes and dtype allow it on NVIDIA GPUs, XLA's otherwise
  (tests/models/test_layers.py checks it against the explicit einsum + softmax, forward and gradient)."""
  return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=None)

