"""The PyTorch peer of the U-Net suite, measured in the same run on the same weights: diffusers' UNet2DModel
built from the benchmark's ``UNetConfig`` (``convert.diffusers_config``), its random weights converted into
jaxdiff's parameters, so both sides compute the same function (the suite records the largest forward
difference). Rows: forward (no_grad, eval), training step (fwd + bwd + Adam, grad-norm clip 1, the ε-MSE loss
at random t), and purification from t̄ with DiffPure's loop structure (diffuse to t̄, then one network call per
step on the host: ancestral DDPM or deterministic DDIM). Inputs NCHW in model space [−1, 1] on the torch side.

torch and diffusers are a test/bench extra (``pip install -e '.[test]'``); this module imports them lazily.
"""
from __future__ import annotations

import sys
import time
import types

import numpy as np

from jaxdiff.convert.diffusers import convert_state_dict, diffusers_config


def import_diffusers():
  """diffusers, importable beside PyPI's torchvision wheel: that wheel is built against the CUDA torch, so with
  the CPU build its fake-kernel registrations fail at import (and diffusers imports torchvision). The peers are
  plain torch.nn: skip the registrations (tests/conftest.py does the same)."""
  sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
  import diffusers
  return diffusers


def torch_unet(ucfg, template, seed=0):
  """(torch UNet2DModel, jaxdiff params with the same weights): random diffusers weights (perturbed so no
  branch is a no-op at init), mapped onto ``template`` (the jaxdiff param shapes)."""
  import torch
  diffusers = import_diffusers()
  torch.manual_seed(seed)
  model = diffusers.UNet2DModel(**diffusers_config(ucfg))
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.02 * torch.randn_like(p))
  params = convert_state_dict({k: v.detach().numpy() for k, v in model.state_dict().items()}, template)
  return model, params


def _timed(fn, iters, warmup=1):
  for _ in range(warmup):
    fn()
  t = time.perf_counter()
  for _ in range(iters):
    fn()
  return (time.perf_counter() - t) / iters


def _autocast(dtype):
  import torch
  return torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16,
                        enabled=dtype == "bfloat16")


def peer_forward(model, x, t, dtype="float32"):
  """ε of the torch model (numpy NHWC) for model-space ``x`` NHWC and timesteps ``t`` [B]: the parity check."""
  import torch
  model.eval()
  with torch.no_grad(), _autocast(dtype):
    out = model(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2)).float(), torch.from_numpy(np.array(t))).sample
  return out.float().numpy().transpose(0, 2, 3, 1)


def bench_peer(model, shape, betas, *, dtype, iters, t_bar, samplers, compile=False):
  """Seconds per call of the peer's rows {"unet_forward", "train_step", "purify_<s>_t<t̄>"} (ddpm / ddim only:
  the other samplers have no PyTorch purification loop to compare with). ``shape`` NHWC; ``betas`` the
  schedule [T]. ``compile``: torch.compile the network (inductor)."""
  import torch
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = model.to(dev)
  net = torch.compile(model) if compile else model
  b, h, w, c = shape
  gen = torch.Generator(device=dev).manual_seed(0)
  x = torch.rand((b, c, h, w), generator=gen, device=dev) * 2 - 1
  t = torch.full((b,), 500, device=dev)
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  rows = {}

  def forward():
    with torch.no_grad(), _autocast(dtype):
      net(x, t).sample
    sync()
  model.eval()
  rows["unet_forward"] = _timed(forward, iters)

  beta = torch.as_tensor(np.asarray(betas), dtype=torch.float32, device=dev)
  abar = torch.cumprod(1 - beta, 0)
  opt = torch.optim.Adam(model.parameters(), lr=2e-4)

  def train_step():
    tt = torch.randint(0, len(betas), (b,), generator=gen, device=dev)
    noise = torch.randn(x.shape, generator=gen, device=dev)
    a = abar[tt].view(-1, 1, 1, 1)
    with _autocast(dtype):
      loss = torch.mean((net(a.sqrt() * x + (1 - a).sqrt() * noise, tt).sample.float() - noise) ** 2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sync()
  model.train()
  rows["train_step"] = _timed(train_step, iters)
  model.eval()

  def purify(sampler):
    with torch.no_grad(), _autocast(dtype):
      a = abar[t_bar - 1]
      xt = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=gen, device=dev)
      for i in reversed(range(t_bar)):
        a, a_prev = abar[i], (abar[i - 1] if i > 0 else torch.ones((), device=dev))
        eps = net(xt, torch.full((b,), i, device=dev)).sample.float()
        x0 = ((xt - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        if sampler == "ddim":
          xt = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        else:  # ancestral posterior step q(x_{t-1} | x_t, x0)
          mean = (a_prev.sqrt() * beta[i] * x0 + (1 - beta[i]).sqrt() * (1 - a_prev) * xt) / (1 - a)
          var = beta[i] * (1 - a_prev) / (1 - a)
          xt = mean + (var.sqrt() * torch.randn(x.shape, generator=gen, device=dev) if i > 0 else 0.0)
      xt.cpu()
    sync()
  for s in samplers:
    if s in ("ddpm", "ddim"):
      rows[f"purify_{s}_t{t_bar}"] = _timed(lambda s=s: purify(s), max(1, iters // 2))
  return rows


def add_peer(results, peer_seconds, device):
  """Adds ``peer_seconds_per_call``, the peer's rate and ``speedup_vs_peer`` (jaxdiff rate ÷ peer rate; None where
  the peer has no such row) to each result row, in place."""
  for r in results:
    s = peer_seconds.get(r["name"])
    r["speedup_vs_peer"] = None if s is None else s / r["seconds_per_call"]
    if s is not None:
      r.update(peer_seconds_per_call=s, peer_device=device)
  return results
