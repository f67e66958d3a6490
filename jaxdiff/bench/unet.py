"""U-Net suite: forward, train step, and 75-step purification per sampler, with FLOPs from XLA's cost analysis."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.bench.timing import flops_of, throughput_record, time_fn
from jaxdiff.models import build_model, count_params, init_variables
from jaxdiff.parallel import batch_sharded, make_mesh, replicated
from jaxdiff.robust import Purifier
from jaxdiff.train import create_state, diffusion_loss, make_optimizer, make_train_step

CIFAR_UNET = dict(name="unet", image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2),
                  attention_resolutions=(16,), layers_per_block=2, norm_num_groups=32, dropout=0.1)  # Ho et al.
UNET_SIZES = {
    "tiny": dict(image_size=16, in_channels=1, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                 layers_per_block=1, norm_num_groups=8),
    "digits": dict(image_size=16, in_channels=1, base_channels=32, channel_mults=(1, 2, 2),
                   attention_resolutions=(8,), layers_per_block=1, norm_num_groups=8),
    "cifar": {},
}


def unet_config(size, dtype):
  """``config.model`` block of a benchmark U-Net: the CIFAR-10 DDPM or a small CPU one."""
  return ml_collections.ConfigDict({**CIFAR_UNET, **UNET_SIZES[size], "dtype": dtype})


def bench_unet(size, batch, dtype, iters, t_bar, samplers, peer="", peer_compile=False):
  """Rows ``unet_forward``, ``train_step``, ``purify_<sampler>_t<t̄>`` (images/s, FLOPs, fraction of peak).
  ``peer="torch"``: the same rows of diffusers' UNet2DModel with the same weights (``bench.peer``), measured in
  this run; every row gets ``speedup_vs_peer`` (jaxdiff rate ÷ peer rate)."""
  mcfg = unet_config(size, dtype)
  model = build_model(mcfg)
  params = init_variables(model, mcfg, jax.random.key(0))["params"]
  extra = {}
  if peer:
    from jaxdiff.bench.peer import torch_unet
    torch_model, params = torch_unet(model.cfg, params)
  mesh = make_mesh()
  shape = (batch, mcfg.image_size, mcfg.image_size, mcfg.in_channels)
  x = jax.device_put(jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1), batch_sharded(mesh))
  t = jax.device_put(jnp.full((batch,), 500.0), batch_sharded(mesh))
  params = jax.device_put(params, replicated(mesh))
  out = []

  fwd = jax.jit(lambda p, x, t: model.apply({"params": p}, x, t))
  fwd_flops = flops_of(fwd, params, x, t)
  if peer:  # same weights on both sides: the forward passes agree
    from jaxdiff.bench.peer import peer_forward
    ours = np.asarray(fwd(params, x, t), np.float32)
    theirs = peer_forward(torch_model, x, t, dtype)
    extra["peer_forward_rel_diff"] = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
  out.append(throughput_record("unet_forward", time_fn(fwd, params, x, t, iters=iters), batch, fwd_flops, dtype))

  sched = diffusion.linear_schedule()
  opt = make_optimizer(ml_collections.ConfigDict(dict(name="adam", lr=2e-4, warmup_steps=0, grad_clip=1.0)))
  state = jax.device_put(create_state(params, opt), replicated(mesh))
  step = make_train_step(model.apply, diffusion_loss(sched), opt, mesh=mesh, donate=False)
  b = {"image": (x + 1) / 2, "label": jnp.zeros((batch,), jnp.int32)}
  out.append(throughput_record("train_step", time_fn(step, state, b, None, iters=iters), batch,
                               flops_of(step, state, b, None), dtype))

  for s in samplers:
    # XLA's cost analysis counts a scan body once: FLOPs = forward FLOPs × network evaluations.
    n_grid = len(diffusion.time_grid(t_bar - 1, None, s in ("ddpm", "ddim")))
    nfe = 2 * (n_grid - 1) + 1 if s == "ode" else n_grid
    pur = jax.jit(lambda p, x, k, s=s: diffusion.purify(Purifier(model).eps_fn(p), sched, x, key=k, t_bar=t_bar,
                                                        sampler=s))
    k = jax.random.key(2)
    out.append(throughput_record(f"purify_{s}_t{t_bar}", time_fn(pur, params, x, k, iters=max(1, iters // 2)),
                                 batch, fwd_flops and fwd_flops * nfe, dtype, network_evals=nfe))
  for r in out:
    r["images_per_sec"] = r.pop("items_per_sec")
  if peer:
    from jaxdiff.bench.peer import add_peer, bench_peer, both_peers, peer_device
    secs, compiled = both_peers(lambda compile: bench_peer(torch_model, shape, sched.betas, dtype=dtype, iters=iters,
                                                           t_bar=t_bar, samplers=samplers, compile=compile),
                                peer_compile)
    add_peer(out, secs, peer_device("diffusers UNet2DModel" + (", eager and torch.compile" if peer_compile else "")),
             compiled)
  return {"model_params": count_params(params), **extra}, out


