"""Throughput benchmarks, printed as JSON (and written to --out).

  python launch/bench.py --suite=unet --size=cifar --batch=256 --dtype=bfloat16     # on a GPU
  python launch/bench.py --suite=unet --size=tiny                                   # on a CPU

Suites: ``unet`` (U-Net forward, train step, 75-step purification per sampler) and ``certify``
(denoised-smoothing draws/s against a host-loop baseline, added with the certification issue).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("suite", "unet", ["unet", "certify"], "What to benchmark.")
flags.DEFINE_enum("size", "tiny", ["tiny", "digits", "cifar"], "Model size: CIFAR-10 DDPM or small CPU ones.")
flags.DEFINE_integer("batch", 0, "Batch size (0: 256 for cifar, 32 otherwise).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (params stay fp32).")
flags.DEFINE_integer("iters", 3, "Timed calls per measurement.")
flags.DEFINE_integer("t_bar", 75, "Purification timestep.")
flags.DEFINE_list("samplers", ["ddpm", "ddim", "sde", "ode"], "Samplers for the purification benchmark.")
flags.DEFINE_integer("n", 10_000, "certify: noise draws per image.")
flags.DEFINE_enum("classifier", "resnet50", ["resnet50", "vit", "tiny"], "certify: classifier behind the denoiser.")
flags.DEFINE_string("out", "", "Also write the JSON here.")
FLAGS = flags.FLAGS

UNET_SIZES = {
    "tiny": dict(image_size=16, in_channels=1, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                 layers_per_block=1, norm_num_groups=8),
    "digits": dict(image_size=16, in_channels=1, base_channels=32, channel_mults=(1, 2, 2),
                   attention_resolutions=(8,), layers_per_block=1, norm_num_groups=8),
    "cifar": {},
}


def unet_config(size, dtype):
  from configs import default
  c = default.get_config().model
  c.update(UNET_SIZES[size])
  c.dtype = dtype
  return c


def bench_unet(size, batch, dtype, iters, t_bar, samplers):
  import jax
  import jax.numpy as jnp
  import ml_collections
  from jaxdiff import diffusion
  from jaxdiff.bench import flops_of, throughput_record, time_fn
  from jaxdiff.models import build_model, count_params, init_variables
  from jaxdiff.parallel import batch_sharded, make_mesh, replicated
  from jaxdiff.train import create_state, diffusion_loss, make_optimizer, make_train_step

  mcfg = unet_config(size, dtype)
  model = build_model(mcfg)
  params = init_variables(model, mcfg, jax.random.key(0))["params"]
  mesh = make_mesh()
  shape = (batch, mcfg.image_size, mcfg.image_size, mcfg.in_channels)
  x = jax.device_put(jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1), batch_sharded(mesh))
  t = jax.device_put(jnp.full((batch,), 500.0), batch_sharded(mesh))
  params = jax.device_put(params, replicated(mesh))
  out = []

  fwd = jax.jit(lambda p, x, t: model.apply({"params": p}, x, t))
  fwd_flops = flops_of(fwd, params, x, t)
  out.append(throughput_record("unet_forward", time_fn(fwd, params, x, t, iters=iters), batch, fwd_flops, dtype))

  sched = diffusion.linear_schedule()
  opt = make_optimizer(ml_collections.ConfigDict(dict(name="adam", lr=2e-4, warmup_steps=0, grad_clip=1.0)))
  state = jax.device_put(create_state(params, opt), replicated(mesh))
  step = make_train_step(model.apply, diffusion_loss(sched), opt, mesh=mesh, donate=False)
  b = {"image": (x + 1) / 2, "label": jnp.zeros((batch,), jnp.int32)}
  out.append(throughput_record("train_step", time_fn(step, state, b, iters=iters), batch,
                               flops_of(step, state, b), dtype))

  for s in samplers:
    # XLA's cost analysis counts a scan body once: FLOPs = forward FLOPs × network evaluations.
    n_grid = len(diffusion.time_grid(t_bar - 1, None, s in ("ddpm", "ddim")))
    nfe = 2 * (n_grid - 1) + 1 if s == "ode" else n_grid
    pur = jax.jit(lambda p, x, k, s=s: diffusion.purify(lambda y, tt: model.apply({"params": p}, y, tt), sched, x,
                                                        key=k, t_bar=t_bar, sampler=s))
    k = jax.random.key(2)
    out.append(throughput_record(f"purify_{s}_t{t_bar}", time_fn(pur, params, x, k, iters=max(1, iters // 2)),
                                 batch, fwd_flops and fwd_flops * nfe, dtype, network_evals=nfe))
  for r in out:
    r["images_per_sec"] = r.pop("items_per_sec")
  return {"model_params": count_params(params)}, out


def main(argv):
  del argv
  import jax
  batch = FLAGS.batch or (256 if FLAGS.size == "cifar" else 32)
  info = {"suite": FLAGS.suite, "size": FLAGS.size, "batch": batch, "dtype": FLAGS.dtype,
          "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(), "jax": jax.__version__}
  if FLAGS.suite == "unet":
    extra, results = bench_unet(FLAGS.size, batch, FLAGS.dtype, FLAGS.iters, FLAGS.t_bar, FLAGS.samplers)
  else:
    import ml_collections
    from jaxdiff.robust.bench import CLASSIFIERS, bench_certify_models
    ucfg = unet_config(FLAGS.size, FLAGS.dtype)
    ccfg = ml_collections.ConfigDict(dict(CLASSIFIERS[FLAGS.classifier], image_size=ucfg.image_size,
                                          in_channels=ucfg.in_channels, num_classes=10, dtype=FLAGS.dtype))
    extra, results = bench_certify_models(ucfg, ccfg, batch=batch, n=FLAGS.n, dtype=FLAGS.dtype,
                                          iters=FLAGS.iters)
    info["classifier"] = FLAGS.classifier
  report = {**info, **extra, "results": results}
  text = json.dumps(report, indent=2)
  print(text)
  if FLAGS.out:
    from jaxdiff.io import atomic_write
    atomic_write(FLAGS.out, text + "\n")


if __name__ == "__main__":
  app.run(main)
