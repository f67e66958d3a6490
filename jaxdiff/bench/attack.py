"""Attack suite: PGD through 75-step DDPM purification with the full gradient (DiffPure's threat model), images/s,
jaxdiff (``jax.checkpoint`` per sampler step, one jitted ``fori_loop`` over PGD steps) against DiffPure's loop in
PyTorch (autograd through every step) on the same weights."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks import pgd_jit
from jaxdiff.bench.certify import build_denoised_classifier
from jaxdiff.bench.memory import POLICIES
from jaxdiff.bench.timing import throughput_record, time_fn
from jaxdiff.robust import PurifiedClassifier, Purifier


def bench_attack(unet_cfg, cls_cfg, *, batch, t_bar, steps, eps=8 / 255, iters=1, peer="", remat="step",
                 peer_timed_steps=None):
  """Row ``pgd<steps>_purify_ddpm_t<t̄>``: seconds per attack of ``batch`` images and images/s; ``peer="torch"``
  adds the PyTorch loop's time and ``speedup_vs_peer``. ``remat``: the gradient's rematerialisation policy
  (``bench.memory.POLICIES``: none / step / dots). ``peer_timed_steps``: time that many of the peer's PGD steps and
  scale (``peer.peer_pgd_seconds``); the row records it."""
  base, params, nparams, twins = build_denoised_classifier(unet_cfg, cls_cfg, peer=peer)
  logits_fn = PurifiedClassifier(Purifier(base.denoiser, t_bar=t_bar, sampler="ddpm", gradient="full",
                                          remat=POLICIES[remat]),
                                 base.classifier)
  shape = (batch, unet_cfg.image_size, unet_cfg.image_size, unet_cfg.in_channels)
  x = jax.random.uniform(jax.random.key(3), shape)
  y = jnp.arange(batch, dtype=jnp.int32) % cls_cfg.num_classes
  run = lambda p, x, k: pgd_jit(logits_fn, x, y, key=k, eps=eps, steps=steps, stochastic=True, params=p)
  secs = time_fn(run, params, x, jax.random.key(0), iters=iters)  # the warm-up call compiles
  row = throughput_record(f"pgd{steps}_purify_ddpm_t{t_bar}", secs, batch, steps=steps, eps=eps,
                          network_evals_per_step=t_bar, gradient="full", remat=remat)
  row["images_per_sec"] = row.pop("items_per_sec")
  extra = {"params": nparams}
  if peer:
    from jaxdiff.bench.peer import add_peer, peer_device, peer_pgd_seconds
    try:
      peer_s = peer_pgd_seconds(*twins, np.asarray(x), np.asarray(y), logits_fn.purifier.make_schedule().betas,
                                eps=eps, steps=steps, t_bar=t_bar, iters=iters,
                                timed_steps=peer_timed_steps)
    except RuntimeError as e:  # torch.OutOfMemoryError: autograd through every step keeps every activation
      if "out of memory" not in str(e):
        raise
      row.update(speedup_vs_peer=None, peer_error="out of memory")
      return extra, [row]
    if peer_timed_steps and peer_timed_steps < steps:
      row["peer_pgd_steps_timed"] = peer_timed_steps
    add_peer([row], {row["name"]: peer_s}, peer_device(f"DiffPure's loop (autograd through every step; diffusers "
                                                       f"UNet2DModel + {cls_cfg.name})"))
  return extra, [row]
