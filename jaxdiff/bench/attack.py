"""Attack suite: PGD and AutoAttack-standard through 75-step DDPM purification with the full gradient (DiffPure's
threat model), images/s, jaxdiff (``jax.checkpoint`` per sampler step, jitted loops over attack iterations) against
the PyTorch loops on the same weights: DiffPure's PGD loop and torchattacks' port of Croce & Hein's AutoAttack, both
with autograd through every purification step."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks import autoattack, pgd_jit
from jaxdiff.bench.certify import build_denoised_classifier
from jaxdiff.bench.memory import POLICIES
from jaxdiff.bench.timing import throughput_record, time_fn
from jaxdiff.robust import PurifiedClassifier, Purifier


def _purified_setup(unet_cfg, cls_cfg, batch, t_bar, remat, peer):
  """(PurifiedClassifier through t̄-step DDPM with the full gradient, random-weight params, parameter count, torch
  twins or None, a batch of random pixels NHWC) shared by the attack rows."""
  base, params, nparams, twins = build_denoised_classifier(unet_cfg, cls_cfg, peer=peer)
  logits_fn = PurifiedClassifier(Purifier(base.denoiser, t_bar=t_bar, sampler="ddpm", gradient="full",
                                          remat=POLICIES[remat]),
                                 base.classifier)
  x = jax.random.uniform(jax.random.key(3), (batch, unet_cfg.image_size, unet_cfg.image_size, unet_cfg.in_channels))
  return logits_fn, params, nparams, twins, x


def bench_attack(unet_cfg, cls_cfg, *, batch, t_bar, steps, eps=8 / 255, iters=1, peer="", remat="step",
                 peer_timed_steps=None, peer_compile=False):
  """Row ``pgd<steps>_purify_ddpm_t<t̄>``: seconds per attack of ``batch`` images and images/s; ``peer="torch"``
  adds the PyTorch loop's time and ``speedup_vs_peer``. ``remat``: the gradient's rematerialisation policy
  (``bench.memory.POLICIES``: none / step / dots). ``peer_timed_steps``: time that many of the peer's PGD steps and
  scale (``peer.peer_pgd_seconds``); the row records it. ``peer_compile``: the peer's networks in torch.compile."""
  logits_fn, params, nparams, twins, x = _purified_setup(unet_cfg, cls_cfg, batch, t_bar, remat, peer)
  y = jnp.arange(batch, dtype=jnp.int32) % cls_cfg.num_classes
  run = lambda p, x, k: pgd_jit(logits_fn, x, y, key=k, eps=eps, steps=steps, stochastic=True, params=p)
  secs = time_fn(run, params, x, jax.random.key(0), iters=iters)  # the warm-up call compiles
  row = throughput_record(f"pgd{steps}_purify_ddpm_t{t_bar}", secs, batch, steps=steps, eps=eps,
                          network_evals_per_step=t_bar, gradient="full", remat=remat)
  row["images_per_sec"] = row.pop("items_per_sec")
  extra = {"params": nparams}
  if peer:
    from jaxdiff.bench.peer import add_peer, both_peers, peer_device, peer_pgd_seconds
    try:
      peer_s, compiled_s = both_peers(
          lambda compile: peer_pgd_seconds(*twins, np.asarray(x), np.asarray(y),
                                           logits_fn.purifier.make_schedule().betas, eps=eps, steps=steps,
                                           t_bar=t_bar, iters=iters, timed_steps=peer_timed_steps, compile=compile),
          peer_compile)
    except RuntimeError as e:  # torch.OutOfMemoryError: autograd through every step keeps every activation
      if "out of memory" not in str(e):
        raise
      row.update(speedup_vs_peer=None, peer_error="out of memory")
      return extra, [row]
    if peer_timed_steps and peer_timed_steps < steps:
      row["peer_pgd_steps_timed"] = peer_timed_steps
    add_peer([row], {row["name"]: peer_s}, peer_device(f"DiffPure's loop (autograd through every step; diffusers "
                                                       f"UNet2DModel + {cls_cfg.name})"
                                                       + (", eager and torch.compile" if peer_compile else "")),
             {row["name"]: compiled_s} if compiled_s else None)
  return extra, [row]


@dataclasses.dataclass(frozen=True)
class FixedNoise:
  """A stochastic ``fn(params, x, key)`` made deterministic, ``(params, x) -> fn(params, x, key(seed))``: the same
  purification noise on every call. Hashable, so the attacks compile once for it."""
  fn: Any
  seed: int = 0

  def __call__(self, params, x):
    return self.fn(params, x, jax.random.key(self.seed))


def bench_autoattack(unet_cfg, cls_cfg, *, batch, t_bar, eps=1e-4, steps=100, queries=5000, iters=1, peer="",
                     remat="step", compact_buckets=8, peer_compile=False):
  """Row ``autoattack_standard_purify_ddpm_t<t̄>``: seconds per AutoAttack-standard run on ``batch`` images (APGD-CE,
  APGD-T and FAB-T over the 9 runner-up classes, ``steps`` iterations each, Square with ``queries`` queries; one
  restart each) through t̄-step DDPM purification, full gradient; ``peer="torch"`` adds torchattacks' AutoAttack
  through DiffPure's loop (``peer.peer_autoattack_seconds``) and ``speedup_vs_peer``.

  AutoAttack attacks only the points still robust, so its run time depends on how many fall early. To compare
  like with like, both sides attack a deterministic model (the purification noise fixed, ``FixedNoise``) on labels
  that are its own predictions, with ε (pixels, ℓ∞) small enough that every point stays robust: each attack runs
  on every point, the worst case. ``robust_after`` (and the peer's) records that it held; with a larger ε the row
  measures a mixed run, where both sides skip the points that fell (``compact_buckets``: ``attacks.autoattack``'s;
  1 attacks the whole batch every time) and ``robust_per_attack`` says how many did. The first call's time,
  compilation included, is ``first_call_seconds``. ``peer_compile``: the peer's networks in torch.compile."""
  purified, params, nparams, twins, x = _purified_setup(unet_cfg, cls_cfg, batch, t_bar, remat, peer)
  logits_fn = FixedNoise(purified)
  y = jnp.argmax(jax.jit(logits_fn)(params, x), -1)
  targets = cls_cfg.num_classes - 1
  run = lambda: autoattack(logits_fn, x, y, key=jax.random.key(0), eps=eps, steps=steps, square_queries=queries,
                           n_target_classes=targets, params=params, return_report=True,
                           compact_buckets=compact_buckets)
  t = time.perf_counter()
  _, report = jax.block_until_ready(run())  # compiles; deterministic, so every timed call does the same work
  first = time.perf_counter() - t
  secs = time_fn(lambda: run()[0], warmup=0, iters=iters)
  row = throughput_record(f"autoattack_standard_purify_ddpm_t{t_bar}", secs, batch, steps=steps, queries=queries,
                          n_target_classes=targets, eps=eps, network_evals_per_step=t_bar, gradient="full",
                          remat=remat, compact_buckets=compact_buckets, first_call_seconds=first,
                          robust_after=report["square"], robust_per_attack=report)
  row["images_per_sec"] = row.pop("items_per_sec")
  if peer:
    from jaxdiff.bench.peer import add_peer, both_peers, peer_autoattack_seconds, peer_device
    (peer_s, row["peer_robust_after"]), compiled = both_peers(
        lambda compile: peer_autoattack_seconds(
            *twins, np.asarray(x), logits_fn.fn.purifier.make_schedule().betas, eps=eps, steps=steps,
            queries=queries, t_bar=t_bar, n_classes=cls_cfg.num_classes, iters=iters, compile=compile), peer_compile)
    add_peer([row], {row["name"]: peer_s}, peer_device(f"torchattacks AutoAttack-standard through DiffPure's loop "
                                                       f"(diffusers UNet2DModel + {cls_cfg.name})"
                                                       + (", eager and torch.compile" if peer_compile else "")),
             {row["name"]: compiled[0]} if compiled else None)
  return {"params": nparams}, [row]
