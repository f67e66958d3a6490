"""Ops suite: where the CIFAR DDPM U-Net's CPU time goes, op by op, jaxdiff (XLA) against torch on the same shapes
(``size="digits"``: the digits U-Net's shapes instead).

The U-Net's building blocks at their CIFAR-10 shapes (Ho et al.: 128 channels at 32², 256 at 16², 8², 4²;
GroupNorm(32); one-head self-attention at 16²), each timed forward and forward + backward (∇ of ⟨out, ct⟩ with
respect to the input and the weights, what a training step and an input-gradient attack run). Run it under
different ``XLA_FLAGS`` to see what a flag changes; ``--peer=torch`` times the same ops in torch (NCHW, autograd).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.bench.timing import time_fn
from jaxdiff.models.layers import GroupNorm


def _ops(batch, size="cifar"):
  """name -> (flax module, input shape NHWC): the CIFAR U-Net's blocks, or (``size="digits"``) the digits U-Net's
  (32 / 64 channels at 16², 8², 4²; GroupNorm(8); attention at 8²)."""
  b = batch
  conv = lambda c: nn.Conv(c, (3, 3), padding=1)
  if size == "digits":
    return {"conv3x3_32_16x16": (conv(32), (b, 16, 16, 32)), "conv3x3_64_8x8": (conv(64), (b, 8, 8, 64)),
            "conv3x3_64_4x4": (conv(64), (b, 4, 4, 64)), "groupnorm_silu_32_16x16": (_NormSiLU(groups=8),
                                                                                     (b, 16, 16, 32)),
            "attention_64_8x8": (_Attention(), (b, 8, 8, 64))}
  return {"conv3x3_128_32x32": (conv(128), (b, 32, 32, 128)), "conv3x3_256_16x16": (conv(256), (b, 16, 16, 256)),
          "conv3x3_256_8x8": (conv(256), (b, 8, 8, 256)), "conv3x3_256_4x4": (conv(256), (b, 4, 4, 256)),
          "groupnorm_silu_128_32x32": (_NormSiLU(), (b, 32, 32, 128)),
          "groupnorm_silu_128_32x32_flax": (_NormSiLU(flax_norm=True), (b, 32, 32, 128)),
          "attention_256_16x16": (_Attention(), (b, 16, 16, 256))}


class _NormSiLU(nn.Module):
  flax_norm: bool = False  # flax's nn.GroupNorm instead of the U-Net's (models.layers.GroupNorm)
  groups: int = 32

  @nn.compact
  def __call__(self, x):
    return nn.silu((nn.GroupNorm if self.flax_norm else GroupNorm)(self.groups, epsilon=1e-6)(x))


class _Attention(nn.Module):
  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    t = x.reshape(b, h * w, c)
    q, k, v = (nn.Dense(c)(t) for _ in range(3))
    a = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / np.sqrt(c), -1)
    return nn.Dense(c)(jnp.einsum("bqk,bkc->bqc", a, v)).reshape(x.shape) + x


def _torch_op(name, mod, shape):
  import torch
  c = shape[-1]
  if name.startswith("conv"):
    return torch.nn.Conv2d(c, c, 3, padding=1)
  if name.startswith("groupnorm"):
    return torch.nn.Sequential(torch.nn.GroupNorm(mod.groups, c, eps=1e-6), torch.nn.SiLU())

  class Attn(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.q, self.k, self.v, self.o = (torch.nn.Linear(c, c) for _ in range(4))

    def forward(self, x):
      b, _, h, w = x.shape
      t = x.flatten(2).transpose(1, 2)
      a = torch.softmax(self.q(t) @ self.k(t).transpose(1, 2) / c ** 0.5, -1)
      return self.o(a @ self.v(t)).transpose(1, 2).reshape(x.shape) + x
  return Attn()


def bench_ops(batch, iters=5, peer="", size="cifar"):
  """Rows ``<op>`` with ``forward_ms`` and ``fwd_bwd_ms`` (and the torch twins' with ``peer="torch"``) at the
  ``size`` ("cifar" | "digits") U-Net's shapes."""
  rows = []
  for name, (mod, shape) in _ops(batch, size).items():
    x = jax.random.normal(jax.random.key(0), shape)
    params = mod.init(jax.random.key(1), x)
    fwd = jax.jit(mod.apply)
    ct = jax.random.normal(jax.random.key(2), shape)
    bwd = jax.jit(jax.grad(lambda p, x: jnp.vdot(mod.apply(p, x), ct), argnums=(0, 1)))
    row = {"name": name, "shape_nhwc": list(shape), "forward_ms": 1e3 * time_fn(fwd, params, x, iters=iters),
           "fwd_bwd_ms": 1e3 * time_fn(bwd, params, x, iters=iters)}
    if peer:
      import torch

      from jaxdiff.bench.peer import peer_device, timed, torch_device
      dev = torch_device()
      sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
      op = _torch_op(name, mod, shape).to(dev)
      xt = torch.randn(shape[0], shape[3], shape[1], shape[2], device=dev)
      ctt = torch.randn_like(xt)

      def t_fwd():
        with torch.no_grad():
          op(xt)
        sync()

      def t_bwd():
        xg = xt.clone().requires_grad_(True)
        op(xg).backward(ctt)
        sync()
      row["torch_forward_ms"], row["torch_fwd_bwd_ms"] = (1e3 * timed(f, iters) for f in (t_fwd, t_bwd))
      row["speedup_vs_peer_forward"] = row["torch_forward_ms"] / row["forward_ms"]
      row["speedup_vs_peer"] = row["torch_fwd_bwd_ms"] / row["fwd_bwd_ms"]
      row["peer_device"] = peer_device("the same op, NCHW, autograd")
    rows.append(row)
  return rows

