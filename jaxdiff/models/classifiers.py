"""Image classifiers, CIFAR variants (3×3 stems, no early pooling). NHWC input in pixel space [0, 1];
normalisation is the first layer. BatchNorm statistics live in the 'batch_stats' collection.

Registered names (``jaxdiff.models.classifier_names()``): cnn, resnet18, resnet50, wrn28_10, wrn18,
densenet121, dla34, shufflenetv2, vit_small, swin_tiny. ``width`` scales channel counts for
digits-size CPU variants (e.g. ``resnet18`` with width=0.25 on 16×16 digits).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.registry import register_classifier

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
  mean: Sequence[float] = CIFAR_MEAN
  std: Sequence[float] = CIFAR_STD

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    mean = jnp.asarray(self.mean if len(self.mean) == c else (0.5,) * c)
    std = jnp.asarray(self.std if len(self.std) == c else (0.5,) * c)
    return (x - mean) / std


def _bn(train, dtype, **kw):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, **kw)


def _c(ch, width):
  return max(4, int(round(ch * width)))


# ---------------------------------------------------------------- simple CNN
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
        x = nn.Conv(w, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(_bn(train, self.dtype)(x))
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


# ---------------------------------------------------------------- ResNet / Wide-ResNet
class BasicBlock(nn.Module):
  ch: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    h = nn.relu(_bn(train, self.dtype)(conv(self.ch, (3, 3), self.stride, padding=1)(x)))
    h = _bn(train, self.dtype)(conv(self.ch, (3, 3), padding=1)(h))
    if self.stride != 1 or x.shape[-1] != self.ch:
      x = _bn(train, self.dtype)(conv(self.ch, (1, 1), self.stride)(x))
    return nn.relu(h + x)


class Bottleneck(nn.Module):
  ch: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    out = self.ch * 4
    h = nn.relu(_bn(train, self.dtype)(conv(self.ch, (1, 1))(x)))
    h = nn.relu(_bn(train, self.dtype)(conv(self.ch, (3, 3), self.stride, padding=1)(h)))
    h = _bn(train, self.dtype)(conv(out, (1, 1))(h))
    if self.stride != 1 or x.shape[-1] != out:
      x = _bn(train, self.dtype)(conv(out, (1, 1), self.stride)(x))
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
    x = nn.Conv(_c(64, self.width), (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(_bn(train, self.dtype)(x))
    for i, n in enumerate(self.stages):
      for j in range(n):
        x = self.block(_c(64 * 2 ** i, self.width), 2 if (i > 0 and j == 0) else 1, self.dtype)(x, train)
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


class WideBlock(nn.Module):
  """Pre-activation wide block (Zagoruyko & Komodakis)."""
  ch: int
  stride: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    h = conv(self.ch, (3, 3), padding=1)(nn.relu(_bn(train, self.dtype)(x)))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(self.ch, (3, 3), self.stride, padding=1)(nn.relu(_bn(train, self.dtype)(h)))
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
    x = nn.Conv(16, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    for i, ch in enumerate((16 * self.widen, 32 * self.widen, 64 * self.widen)):
      for j in range(n):
        x = WideBlock(ch, 2 if (i > 0 and j == 0) else 1, self.dropout, self.dtype)(x, train)
    x = nn.relu(_bn(train, self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


# ---------------------------------------------------------------- DenseNet
class DenseNet(nn.Module):
  """DenseNet-BC (Huang et al.), CIFAR stem; growth 32, compression 0.5."""
  blocks: Sequence[int] = (6, 12, 24, 16)
  growth: int = 32
  num_classes: int = 10
  width: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    g = _c(self.growth, self.width)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    x = conv(2 * g, (3, 3), padding=1)(Normalize()(x).astype(self.dtype))
    for i, n in enumerate(self.blocks):
      for _ in range(n):
        h = conv(4 * g, (1, 1))(nn.relu(_bn(train, self.dtype)(x)))
        h = conv(g, (3, 3), padding=1)(nn.relu(_bn(train, self.dtype)(h)))
        x = jnp.concatenate([h, x], -1)
      if i < len(self.blocks) - 1:
        x = conv(x.shape[-1] // 2, (1, 1))(nn.relu(_bn(train, self.dtype)(x)))
        x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(_bn(train, self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


# ---------------------------------------------------------------- DLA-34
class _Root(nn.Module):
  ch: int
  dtype: Any

  @nn.compact
  def __call__(self, xs, train):
    x = nn.Conv(self.ch, (1, 1), use_bias=False, dtype=self.dtype)(jnp.concatenate(xs, -1))
    return nn.relu(_bn(train, self.dtype)(x))


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
    c = lambda ch: _c(ch, self.width)
    x = Normalize()(x).astype(self.dtype)
    for ch in (16, 16, 32):
      x = nn.Conv(c(ch), (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(_bn(train, self.dtype)(x))
    for ch, level, stride in ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 1, 2)):
      x = _Tree(c(ch), level, stride, self.dtype)(x, train)
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


# ---------------------------------------------------------------- ShuffleNetV2
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
    bn = lambda y: _bn(train, self.dtype)(y)
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
    c = lambda ch: 2 * _c(ch // 2, self.width)
    x = Normalize()(x).astype(self.dtype)
    x = nn.relu(_bn(train, self.dtype)(nn.Conv(24, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)))
    for out, n in ((116, 3), (232, 7), (464, 3)):
      for j in range(n + 1):
        x = _ShuffleUnit(c(out), 2 if j == 0 else 1, self.dtype)(x, train)
    x = nn.Conv(c(1024), (1, 1), use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(_bn(train, self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


# ---------------------------------------------------------------- ViT
class _MLP(nn.Module):
  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    return nn.Dense(d, dtype=self.dtype)(nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x)))


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
      x = x + _MLP(self.dim * self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
    x = nn.LayerNorm(dtype=self.dtype)(x[:, 0])
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


# ---------------------------------------------------------------- Swin
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
    return x + _MLP(4 * c, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))


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
    return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, (1, 2))).astype(jnp.float32)


# ---------------------------------------------------------------- registry
@register_classifier("cnn")
def cnn(num_classes=10, widths=(32, 64), dtype=jnp.float32):
  return SimpleCNN(num_classes, tuple(widths), dtype)


@register_classifier("resnet18")
def resnet18(num_classes=10, width=1.0, dtype=jnp.float32):
  return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, dtype)


@register_classifier("resnet50")
def resnet50(num_classes=10, width=1.0, dtype=jnp.float32):
  return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width, dtype)


@register_classifier("wrn18")
def wrn18(num_classes=10, width=2.0, dtype=jnp.float32):
  """'Wide-ResNet-18' of the DIFF2 surrogates: ResNet-18 with channels widened ×2."""
  return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, dtype)


@register_classifier("wrn28_10")
def wrn28_10(num_classes=10, depth=28, widen=10, dropout=0.0, dtype=jnp.float32):
  return WideResNet(depth, widen, num_classes, dropout, dtype)


@register_classifier("densenet121")
def densenet121(num_classes=10, width=1.0, dtype=jnp.float32):
  return DenseNet((6, 12, 24, 16), 32, num_classes, width, dtype)


@register_classifier("dla34")
def dla34(num_classes=10, width=1.0, dtype=jnp.float32):
  return DLA(num_classes, width, dtype)


@register_classifier("shufflenetv2")
def shufflenetv2(num_classes=10, width=1.0, dtype=jnp.float32):
  return ShuffleNetV2(num_classes, width, dtype)


@register_classifier("vit_small")
def vit_small(num_classes=10, patch=4, dim=384, depth=12, heads=6, dtype=jnp.float32):
  return ViT(num_classes, patch, dim, depth, heads, 4, dtype)


@register_classifier("swin_tiny")
def swin_tiny(num_classes=10, patch=2, window=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24),
              dtype=jnp.float32):
  return Swin(num_classes, patch, window, dim, tuple(depths), tuple(heads), dtype)
