"""The PyTorch peers of the benchmarks, in the same run on the same weights. U-Net suite: diffusers' UNet2DModel
built from the benchmark's ``UNetConfig`` (``convert.diffusers_config``), its random weights converted into
jaxdiff's parameters, so both sides compute the same function (the suite records the largest forward
difference). Rows: forward (no_grad, eval), training step (fwd + bwd + Adam, grad-norm clip 1, the ε-MSE loss
at random t), and purification from t̄ with DiffPure's loop structure (diffuse to t̄, then one network call per
step on the host: ancestral DDPM or deterministic DDIM). Inputs NCHW in model space [−1, 1] on the torch side.
Certification and attack suites: the torch twin of the classifier (``torch_classifier``), Carlini et al.'s
certification loop (``peer_certify_seconds``), PGD through DiffPure's purification loop (``peer_pgd_seconds``) and
torchattacks' AutoAttack through it (``peer_autoattack_seconds``).

torch and diffusers are a test/bench extra (``pip install -e '.[test]'``); this module imports them lazily.
"""
from __future__ import annotations

import sys
import time
import types

import numpy as np

from jaxdiff.convert.diffusers import convert_state_dict, diffusers_config


def _skip_torchvision_registrations():
  """PyPI's torchvision wheel is built against the CUDA torch, so beside the CPU build its fake-kernel
  registrations fail at import (diffusers and timm import torchvision). The peers are plain torch.nn: skip the
  registrations (tests/conftest.py does the same)."""
  sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))


def import_diffusers():
  """diffusers, importable beside PyPI's torchvision wheel (``_skip_torchvision_registrations``)."""
  _skip_torchvision_registrations()
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


def timed(fn, iters, warmup=1):
  """Seconds per call of a host function (torch syncs inside ``fn``), after ``warmup`` calls."""
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
  dev = torch_device()
  model.to(dev).eval()
  with torch.no_grad(), _autocast(dtype):
    out = model(torch_nchw(x, dev),
                torch.from_numpy(np.array(t)).to(dev)).sample
  return out.float().cpu().numpy().transpose(0, 2, 3, 1)


def bench_peer(model, shape, betas, *, dtype, iters, t_bar, samplers, compile=False):
  """Seconds per call of the peer's rows {"unet_forward", "train_step", "purify_<s>_t<t̄>"} (ddpm / ddim only:
  the other samplers have no PyTorch purification loop to compare with). ``shape`` NHWC; ``betas`` the
  schedule [T]. ``compile``: torch.compile the network (inductor)."""
  import torch
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  model = model.to(dev)
  net = compile_peer(model) if compile else model
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
  rows["unet_forward"] = timed(forward, iters)

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
  rows["train_step"] = timed(train_step, iters)
  model.eval()

  def purify(sampler):
    with torch.no_grad(), _autocast(dtype):
      torch_purify(net, x, beta, t_bar, gen, sampler).cpu()
    sync()
  for s in samplers:
    if s in ("ddpm", "ddim"):
      rows[f"purify_{s}_t{t_bar}"] = timed(lambda s=s: purify(s), max(1, iters // 2))
  return rows


def torch_purify(net, x, beta, t_bar, gen, sampler="ddpm"):
  """DiffPure's purification loop in torch: diffuse model-space ``x`` (NCHW) to t̄, then one network call per step
  on the host, ancestral DDPM (posterior q(x_{t−1} | x_t, x̂0)) or deterministic DDIM; x̂0 clipped to [−1, 1].
  Differentiable (autograd through every step) unless called under ``no_grad``."""
  import torch
  abar = torch.cumprod(1 - beta, 0)
  noise = lambda: torch.randn(x.shape, generator=gen, device=x.device)
  a = abar[t_bar - 1]
  xt = a.sqrt() * x + (1 - a).sqrt() * noise()
  for i in reversed(range(t_bar)):
    a, a_prev = abar[i], (abar[i - 1] if i > 0 else torch.ones((), device=x.device))
    eps = net(xt, torch.full((x.shape[0],), i, device=x.device)).sample.float()
    x0 = ((xt - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
    if sampler == "ddim":
      xt = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    else:
      mean = (a_prev.sqrt() * beta[i] * x0 + (1 - beta[i]).sqrt() * (1 - a_prev) * xt) / (1 - a)
      xt = mean + ((beta[i] * (1 - a_prev) / (1 - a)).sqrt() * noise() if i > 0 else 0.0)
  return xt


def peer_device(what):
  """The ``peer_device`` string of a row: torch version, device, threads and what ran."""
  import torch
  return (f"torch {torch.__version__} {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"{torch.get_num_threads()} threads, {what}")


def add_peer(results, peer_seconds, device, compiled_seconds=None):
  """Adds ``peer_seconds_per_call`` and ``speedup_vs_peer`` (jaxdiff rate ÷ the eager peer's rate; None where the
  peer has no such row) to each result row, in place; with ``compiled_seconds`` (the same peer under
  ``compile_peer``, measured in the same run) also ``compiled_peer_seconds_per_call`` and ``speedup_vs_compiled_peer``."""
  for r in results:
    s = peer_seconds.get(r["name"])
    r["speedup_vs_peer"] = None if s is None else s / r["seconds_per_call"]
    if s is not None:
      r.update(peer_seconds_per_call=s, peer_device=device)
    if compiled_seconds is not None:
      c = compiled_seconds.get(r["name"])
      r["speedup_vs_compiled_peer"] = None if c is None else c / r["seconds_per_call"]
      if c is not None:
        r["compiled_peer_seconds_per_call"] = c
  return results


def both_peers(measure, compile):
  """(eager seconds, compiled seconds or None): ``measure(compile=...)`` run eager, then (with ``compile``) again
  with the networks under ``compile_peer``."""
  return measure(compile=False), (measure(compile=True) if compile else None)


def compile_peer(module):
  """The strongest PyTorch form of a peer network: on CUDA, channels_last memory and
  ``torch.compile(mode="max-autotune")``; on a CPU, ``torch.compile`` with inductor's defaults (max-autotune's
  CPU search takes minutes for nothing)."""
  import torch
  if torch.cuda.is_available():
    return torch.compile(module.to(memory_format=torch.channels_last), mode="max-autotune")
  return torch.compile(module)


# --- classifiers and the robustness loops (certification, PGD through purification) -----------------------------

def torch_classifier(name, variables):
  """The torch twin (eval mode, NCHW pixel-space [0, 1] in, logits out) of a jaxdiff classifier with the same
  weights: ``cnn`` (SimpleCNN), ``resnet18`` / ``resnet50`` / ``wrn18`` (the pytorch-cifar ResNets). Other
  architectures have no twin here (ValueError)."""
  import torch
  from torch import nn

  from jaxdiff.models.layers import CIFAR_MEAN, CIFAR_STD
  from jaxdiff.models.registry import CLASSIFIERS
  if name not in ("cnn", "resnet18", "resnet50", "wrn18"):
    raise ValueError(f"no torch twin of classifier {name!r}: use cnn, resnet18, resnet50 or wrn18")
  arch = CLASSIFIERS[name]()  # the flax module's layout (ResNet stages and block kind)
  p, s = variables["params"], variables.get("batch_stats", {})
  t = lambda a: torch.from_numpy(np.array(a, np.float32))

  def conv(name_, scope, stride=1):
    k = np.asarray(scope[name_]["kernel"])  # HWIO
    c = nn.Conv2d(k.shape[2], k.shape[3], k.shape[:2], stride, padding=k.shape[0] // 2, bias=False)
    c.weight.data = t(k.transpose(3, 2, 0, 1))
    return c

  def bn(name_, scope, stats):
    b = nn.BatchNorm2d(np.asarray(scope[name_]["scale"]).shape[0], eps=1e-5)
    b.weight.data, b.bias.data = t(scope[name_]["scale"]), t(scope[name_]["bias"])
    b.running_mean.data, b.running_var.data = t(stats[name_]["mean"]), t(stats[name_]["var"])
    return b

  class Block(nn.Module):
    def __init__(self, bp, bs, stride, bottleneck):
      super().__init__()
      n = 3 if bottleneck else 2
      strides = [1, stride, 1] if bottleneck else [stride, 1]
      self.convs = nn.ModuleList([conv(f"Conv_{i}", bp, strides[i]) for i in range(n)])
      self.bns = nn.ModuleList([bn(f"BatchNorm_{i}", bp, bs) for i in range(n)])
      self.short = (nn.Sequential(conv(f"Conv_{n}", bp, stride), bn(f"BatchNorm_{n}", bp, bs))
                    if f"Conv_{n}" in bp else nn.Identity())

    def forward(self, x):
      h = x
      for i, (c, b) in enumerate(zip(self.convs, self.bns)):
        h = b(c(h))
        h = torch.relu(h) if i < len(self.convs) - 1 else h
      return torch.relu(h + self.short(x))

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      in_ch = np.asarray(p["Conv_0"]["kernel"]).shape[2]
      cifar = name != "cnn" and in_ch == len(CIFAR_MEAN)  # jaxdiff's Normalize: CIFAR stats, else 0.5 / 0.5
      mean, std = (CIFAR_MEAN, CIFAR_STD) if cifar else ((0.5,) * in_ch, (0.5,) * in_ch)
      self.register_buffer("mean", t(mean).view(1, -1, 1, 1))
      self.register_buffer("std", t(std).view(1, -1, 1, 1))
      if name == "cnn":
        n = len([k for k in p if k.startswith("Conv_")])
        self.layers = nn.ModuleList([nn.Sequential(conv(f"Conv_{i}", p), bn(f"BatchNorm_{i}", p, s), nn.ReLU())
                                     for i in range(n)])
        self.blocks = None
      else:
        self.layers = nn.ModuleList([nn.Sequential(conv("Conv_0", p), bn("BatchNorm_0", p, s), nn.ReLU())])
        kind = arch.block.__name__
        strides = [2 if (i > 0 and j == 0) else 1 for i, n in enumerate(arch.stages) for j in range(n)]
        self.blocks = nn.ModuleList([Block(p[f"{kind}_{k}"], s[f"{kind}_{k}"], st, kind == "Bottleneck")
                                     for k, st in enumerate(strides)])
      k = np.asarray(p["Dense_0"]["kernel"])
      self.head = nn.Linear(*k.shape)
      self.head.weight.data, self.head.bias.data = t(k.T), t(p["Dense_0"]["bias"])

    def forward(self, x):
      x = (x - self.mean) / self.std
      for i, layer in enumerate(self.layers):
        x = layer(x)
        if self.blocks is None and i % 2 == 1:  # SimpleCNN: max-pool after each stage of two convs
          x = torch.nn.functional.max_pool2d(x, 2)
      for b in self.blocks or ():
        x = b(x)
      return self.head(x.mean((2, 3)))

  return Net().eval()


def torch_device():
  """Where the torch peer runs: the GPU when torch sees one, else the CPU."""
  import torch
  return "cuda" if torch.cuda.is_available() else "cpu"


def torch_nchw(x, device="cpu"):
  """NHWC array (numpy or jax) → contiguous float32 NCHW torch tensor on ``device``. Contiguous matters: a transposed
  view keeps NHWC strides, and torchattacks' FAB ``.view``s gradients laid out like its input (it failed so on a
  3-channel CIFAR batch, H200 2026-11-29)."""
  import torch
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))).to(device)


def torch_denoise_classify(unet, clf, x_noisy, abar_t, t_star):
  """Carlini et al.'s base classifier in torch: x + σz (pixels, NCHW) → x_t* = √ᾱ(2x − 1) → one-shot x̂0
  (clipped) → logits of ``clf`` on (x̂0 + 1)/2."""
  import torch
  x_t = abar_t.sqrt() * (2 * x_noisy - 1)
  eps = unet(x_t, torch.full((x_t.shape[0],), t_star, device=x_t.device)).sample.float()
  x0 = ((x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()).clamp(-1, 1)
  return clf((x0 + 1) / 2)


def on_device(unet, clf, compile=False):
  """The twins moved to the peer's device in eval mode; ``compile``: each in its ``compile_peer`` form."""
  dev = torch_device()
  unet, clf = unet.to(dev).eval(), clf.to(dev).eval()
  return (compile_peer(unet), compile_peer(clf)) if compile else (unet, clf)


def peer_certify_seconds(unet, clf, x, betas, *, sigma, t_star, n, batch, dtype="float32", compile=False):
  """Seconds for ``n`` draws of one image (NHWC pixels) with Carlini et al.'s / Cohen et al.'s loop: per batch,
  x repeated, noise drawn on the device, one network call, argmax copied to the host, counts on the host.
  Timed after one warm-up batch (which compiles, with ``compile``)."""
  import torch
  dev = torch_device()
  num_classes = clf.head.out_features
  unet, clf = on_device(unet, clf, compile)
  abar_t = torch.cumprod(1 - torch.as_tensor(np.asarray(betas), dtype=torch.float32), 0)[t_star].to(dev)
  xt = torch_nchw(x, dev)
  gen = torch.Generator(device=dev).manual_seed(0)

  def run(num):
    counts, left = np.zeros(num_classes, np.int64), num
    with torch.no_grad(), _autocast(dtype):
      while left > 0:
        m = min(batch, left)
        left -= m
        b = xt.repeat((m, 1, 1, 1))
        noise = torch.randn(b.shape, generator=gen, device=dev) * sigma
        pred = torch_denoise_classify(unet, clf, b + noise, abar_t, t_star).argmax(1)
        counts += np.bincount(pred.cpu().numpy(), minlength=len(counts))
    return counts
  run(min(n, batch))  # warm-up: one batch
  return timed(lambda: run(n), 1, warmup=0)


def peer_pgd_seconds(unet, clf, x, y, betas, *, eps, steps, t_bar, iters=1, timed_steps=None, compile=False):
  """Seconds of PGD-``steps`` (ℓ∞, CE, full gradient) through ``t_bar``-step ancestral DDPM purification with
  DiffPure's loop structure in torch (autograd through every step; no rematerialisation). x NHWC pixels.
  ``timed_steps`` < ``steps``: after one untimed warm-up step, time that many PGD steps and scale to ``steps``
  (every PGD step does the same work; the torch loop is slow enough that timing all of them costs the lease).
  ``compile``: torch.compile both networks (compiled in the warm-up step)."""
  import torch
  dev = torch_device()
  unet, clf = on_device(unet, clf, compile)
  beta = torch.as_tensor(np.asarray(betas), dtype=torch.float32, device=dev)
  x0 = torch_nchw(x, dev)
  yt = torch.from_numpy(np.array(y)).long().to(dev)
  gen = torch.Generator(device=dev).manual_seed(0)
  purify = lambda xp: ((torch_purify(unet, 2 * xp - 1, beta, t_bar, gen) + 1) / 2).clamp(0, 1)

  def attack(n):
    step = 2.5 * eps / steps
    xa = (x0 + eps * (2 * torch.rand(x0.shape, generator=gen, device=dev) - 1)).clamp(0, 1)
    for _ in range(n):
      xa = xa.detach().requires_grad_(True)
      loss = torch.nn.functional.cross_entropy(clf(purify(xa)), yt)
      (g,) = torch.autograd.grad(loss, xa)
      xa = torch.min(torch.max(xa.detach() + step * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    xa.cpu()
  if (not timed_steps or timed_steps >= steps) and not compile:
    return timed(lambda: attack(steps), iters, warmup=0)
  timed_steps = min(timed_steps or steps, steps)
  attack(1)
  return timed(lambda: attack(timed_steps), iters, warmup=0) * steps / timed_steps


def peer_autoattack_seconds(unet, clf, x, betas, *, eps, steps, queries, t_bar, n_classes, iters=1, compile=False):
  """(seconds per run, fraction still robust) of AutoAttack-standard in torchattacks' port of Croce & Hein's code
  (a MultiAttack of APGD-CE, APGD-T and FAB-T over the ``n_classes`` − 1 runner-up classes, ``steps`` iterations
  each, and Square with ``queries`` queries; one restart each, each on the points still robust) through t̄-step
  DDPM purification in DiffPure's loop (autograd through every step). The purification noise is fixed (the
  generator reseeded per call) and the labels are the model's own predictions, as on jaxdiff's side
  (``bench.attack.bench_autoattack``). x NHWC pixels. torchattacks is installed without its dependencies (it pins
  an old ``requests`` it does not import): ``pip install --no-deps torchattacks==3.5.1``. ``compile``: both networks
  in torch.compile, and one untimed run first (it compiles for each subset size it meets)."""
  import torch
  import torchattacks
  dev = torch_device()
  unet, clf = on_device(unet, clf, compile)
  beta = torch.as_tensor(np.asarray(betas), dtype=torch.float32, device=dev)

  class Purified(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.unet, self.clf = unet, clf

    def forward(self, xp):
      gen = torch.Generator(device=xp.device).manual_seed(0)
      return self.clf(((torch_purify(self.unet, 2 * xp - 1, beta, t_bar, gen) + 1) / 2).clamp(0, 1))

  model = Purified().eval()
  xt = torch_nchw(x, dev)
  with torch.no_grad():
    y = model(xt).argmax(1)
  kw = dict(norm="Linf", eps=eps, n_restarts=1, seed=0)
  attack = torchattacks.MultiAttack([
      torchattacks.APGD(model, steps=steps, loss="ce", **kw),
      torchattacks.APGDT(model, steps=steps, n_classes=n_classes, **kw),
      torchattacks.FAB(model, steps=steps, multi_targeted=True, n_classes=n_classes, **kw),
      torchattacks.Square(model, n_queries=queries, **kw)])
  out = {}

  def run():
    out["adv"] = attack(xt, y)
    out["adv"].cpu()
  secs = timed(run, iters, warmup=int(compile))
  with torch.no_grad():
    robust = float((model(out["adv"]).argmax(1) == y).float().mean())
  return secs, robust


def torch_carlini_twins(adm_kwargs, vit_cfg, seed=0):
  """Carlini et al.'s CIFAR-10 pipeline in torch and in jaxdiff with the same random weights: the OpenAI
  ``UNetModel`` (guided-diffusion-sdk, ``create_model(**adm_kwargs)``) and timm's ``VisionTransformer`` (``vit_cfg``:
  a TimmViT config block). Returns (torch U-Net twin whose ``(x, t).sample`` is the ε half, torch classifier twin
  taking 32 × 32 pixels and resizing / normalising like TimmViT, {'denoiser': params, 'classifier': variables})."""
  import torch
  from guided_diffusion.script_util import create_model
  _skip_torchvision_registrations()
  from timm.models.vision_transformer import VisionTransformer

  from jaxdiff.convert.openai import param_template, params_from_openai_state
  from jaxdiff.convert.timm import params_from_timm_state
  from jaxdiff.models.adm import ADMUNet, create_model_config

  torch.manual_seed(seed)
  unet = create_model(**adm_kwargs).eval()
  vit = VisionTransformer(img_size=vit_cfg.resolution, patch_size=vit_cfg.patch, embed_dim=vit_cfg.dim,
                          depth=vit_cfg.depth, num_heads=vit_cfg.heads, num_classes=vit_cfg.num_classes).eval()
  with torch.no_grad():  # the OpenAI code and timm zero-initialise output layers: perturb so every branch counts
    for p in list(unet.parameters()) + list(vit.parameters()):
      p.add_(0.02 * torch.randn_like(p))
  cfg = create_model_config(**adm_kwargs)
  template = param_template(ADMUNet(cfg), cfg)
  numpy_state = lambda m: {k: v.detach().numpy() for k, v in m.state_dict().items()}
  params = {"denoiser": params_from_openai_state(numpy_state(unet), template),
            "classifier": {"params": params_from_timm_state(numpy_state(vit))}}
  mean, std = torch.tensor(vit_cfg.mean).view(1, 3, 1, 1), torch.tensor(vit_cfg.std).view(1, 3, 1, 1)

  class EpsHalf(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net = unet

    def forward(self, x, t):
      return types.SimpleNamespace(sample=self.net(x, t)[:, :x.shape[1]])

  class Resized(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net, self.head = vit, vit.head
      self.register_buffer("mean", mean)
      self.register_buffer("std", std)

    def forward(self, x):
      x = torch.nn.functional.interpolate(x, size=(vit_cfg.resolution,) * 2, mode="bilinear", align_corners=False)
      return self.net((x - self.mean) / self.std)

  return EpsHalf(), Resized(), params
