"""Memory suite: what the input gradient through t̄-step purification needs, by rematerialisation policy.

For each policy the jitted ∇ₓ (cross-entropy-free: the sum of the purified image, which has the same backward
graph as any loss on x̂0) is compiled for the benchmark U-Net at ``batch`` and XLA's ``memory_analysis()`` gives
its temporary, argument and output bytes — a compile, no run, so a CPU compile measures the CIFAR / batch-64
program a GPU would run. With ``time_batch`` the gradient is also run and timed at that batch (remat's runtime
cost). Policies: ``none`` (the whole chain's activations kept), ``step`` (``jax.checkpoint`` per sampler step:
only the carry is kept), ``dots`` (per step, also saving convolution / matmul outputs:
``jax.checkpoint_policies.dots_saveable``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff import diffusion
from jaxdiff.bench.timing import time_fn
from jaxdiff.bench.unet import unet_config
from jaxdiff.models import build_model, init_variables

POLICIES = {"none": False, "step": True, "dots": jax.checkpoint_policies.dots_saveable}


def purify_grad_fn(model, t_bar, sampler, remat):
  """Jitted ``(params, x, key) -> ∇ₓ Σ purify(x)`` (x model space, NHWC)."""
  sched = diffusion.linear_schedule()

  def total(x, params, key):
    eps = lambda x_t, t: model.apply({"params": params}, x_t, t)
    return jnp.sum(diffusion.purify(eps, sched, x, key=key, t_bar=t_bar, sampler=sampler, remat=remat))
  return jax.jit(lambda params, x, key: jax.grad(total)(x, params, key))


def bench_memory(size, batch, dtype, t_bar, sampler="ddpm", policies=tuple(POLICIES), time_batch=0, iters=1):
  """Rows ``purify_grad_<sampler>_t<t̄>_remat_<policy>``: temp / argument / output bytes of the compiled gradient
  at ``batch``; with ``time_batch``, seconds per call and images/s at that batch."""
  mcfg = unet_config(size, dtype)
  model = build_model(mcfg)
  shape = (mcfg.image_size, mcfg.image_size, mcfg.in_channels)
  params_shape = jax.eval_shape(lambda k: init_variables(model, mcfg, k)["params"], jax.random.key(0))
  key = jax.random.key(1)
  rows = []
  for name in policies:
    fn = purify_grad_fn(model, t_bar, sampler, POLICIES[name])
    compiled = fn.lower(params_shape, jax.ShapeDtypeStruct((batch,) + shape, jnp.float32), key).compile()
    mem = compiled.memory_analysis()
    row = {"name": f"purify_grad_{sampler}_t{t_bar}_remat_{name}", "batch": batch,
           "temp_bytes": int(mem.temp_size_in_bytes), "argument_bytes": int(mem.argument_size_in_bytes),
           "output_bytes": int(mem.output_size_in_bytes)}
    row["temp_gib"] = row["temp_bytes"] / 2 ** 30
    if time_batch:
      params = init_variables(model, mcfg, jax.random.key(0))["params"]
      x = jax.random.uniform(jax.random.key(2), (time_batch,) + shape, minval=-1, maxval=1)
      secs = time_fn(fn, params, x, key, iters=iters)
      row.update(time_batch=time_batch, seconds_per_call=secs, images_per_sec=time_batch / secs)
    rows.append(row)
  return rows


def bench_attack_memory(unet_cfg, cls_cfg, batch, t_bar, sampler="ddpm", eot=20, steps=100):
  """Rows ``autoattack_<attack>_purify_<sampler>_t<t̄>``: temp / argument / output bytes of each compiled program of
  AutoAttack (APGD-CE and APGD-DLR with ``eot`` EOT draws as in 'rand', targeted FAB, Square) through t̄-step
  purification with the full gradient and ``jax.checkpoint`` per sampler step (the Purifier's default), f∘φ with
  random weights. Compile only."""
  from jaxdiff.attacks.autoattack import _apgd, _fab_t, _square
  from jaxdiff.bench.certify import build_denoised_classifier
  from jaxdiff.robust import PurifiedClassifier, Purifier
  base, params, _, _ = build_denoised_classifier(unet_cfg, cls_cfg)
  f = PurifiedClassifier(Purifier(base.denoiser, t_bar=t_bar, sampler=sampler, gradient="full", remat=True),
                         base.classifier)
  x = jax.ShapeDtypeStruct((batch, unet_cfg.image_size, unet_cfg.image_size, unet_cfg.in_channels), jnp.float32)
  y = jax.ShapeDtypeStruct((batch,), jnp.int32)
  common = dict(key=jax.random.key(0), eps=8 / 255, stochastic=True, params=params)
  programs = {"apgd_ce": lambda: _apgd.lower(f, x, y, steps=steps, loss="ce", eot=eot, **common),
              "apgd_dlr": lambda: _apgd.lower(f, x, y, steps=steps, loss="dlr", eot=eot, **common),
              "fab_t": lambda: _fab_t.lower(f, x, y, y, steps=steps, **common),
              "square": lambda: _square.lower(f, x, y, queries=5000, **common)}
  rows = []
  for name, lower in programs.items():
    mem = lower().compile().memory_analysis()
    rows.append({"name": f"autoattack_{name}_purify_{sampler}_t{t_bar}", "batch": batch,
                 "eot": eot if name.startswith("apgd") else 1, "remat": "step",
                 "temp_bytes": int(mem.temp_size_in_bytes), "argument_bytes": int(mem.argument_size_in_bytes),
                 "output_bytes": int(mem.output_size_in_bytes), "temp_gib": mem.temp_size_in_bytes / 2 ** 30})
  return rows
