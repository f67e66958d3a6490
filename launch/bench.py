"""Throughput benchmarks, printed as JSON (and written to --out).

  python launch/bench.py --suite=unet --size=cifar --batch=256 --dtype=bfloat16     # on a GPU
  python launch/bench.py --suite=unet --size=tiny                                   # on a CPU
  python launch/bench.py --suite=unet --size=cifar --batch=8 --peer=torch           # + diffusers, same weights

Suites (``jaxdiff.bench``): ``unet`` (U-Net forward, train step, 75-step purification per sampler; ``--peer=torch``
adds diffusers' UNet2DModel on the same weights), ``certify`` (denoised-smoothing draws/s against a host-loop
baseline, measured in the same run) and ``memory`` (bytes of the input gradient through purification per
rematerialisation policy, from XLA's memory analysis of the compiled program).

  python launch/bench.py --suite=memory --size=cifar --batch=64 --samplers=ddpm     # compile only; CPU is enough
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("suite", "unet", ["unet", "certify", "memory"], "What to benchmark.")
flags.DEFINE_enum("size", "tiny", ["tiny", "digits", "cifar"], "Model size: CIFAR-10 DDPM or small CPU ones.")
flags.DEFINE_integer("batch", 0, "Batch size (0: 256 for cifar, 32 otherwise).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (params stay fp32).")
flags.DEFINE_integer("iters", 3, "Timed calls per measurement.")
flags.DEFINE_integer("t_bar", 75, "Purification timestep.")
flags.DEFINE_list("samplers", ["ddpm", "ddim", "sde", "ode"], "Samplers for the purification benchmark.")
flags.DEFINE_integer("n", 10_000, "certify: noise draws per image.")
flags.DEFINE_enum("classifier", "resnet50", ["resnet50", "vit", "tiny"], "certify: classifier behind the denoiser.")
flags.DEFINE_enum("peer", "", ["", "torch"], "unet: also time diffusers' UNet2DModel (same weights) in this run; "
                  "rows gain speedup_vs_peer = jaxdiff rate / peer rate.")
flags.DEFINE_bool("peer_compile", False, "torch.compile the peer network.")
flags.DEFINE_list("remat", ["none", "step", "dots"], "memory: rematerialisation policies compiled.")
flags.DEFINE_integer("time_batch", 0, "memory: also run and time the gradient at this batch (0: compile only).")
flags.DEFINE_string("out", "", "Also write the JSON here.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  import ml_collections
  from jaxdiff.bench import CLASSIFIERS, bench_certify_models, bench_unet, unet_config
  from jaxdiff.io import atomic_write
  batch = FLAGS.batch or (256 if FLAGS.size == "cifar" else 32)
  info = {"suite": FLAGS.suite, "size": FLAGS.size, "batch": batch, "dtype": FLAGS.dtype,
          "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(), "jax": jax.__version__}
  if FLAGS.suite == "unet":
    extra, results = bench_unet(FLAGS.size, batch, FLAGS.dtype, FLAGS.iters, FLAGS.t_bar, FLAGS.samplers,
                                peer=FLAGS.peer, peer_compile=FLAGS.peer_compile)
  elif FLAGS.suite == "memory":
    from jaxdiff.bench.memory import bench_memory
    extra, results = {"sampler": FLAGS.samplers[0], "t_bar": FLAGS.t_bar}, bench_memory(
        FLAGS.size, batch, FLAGS.dtype, FLAGS.t_bar, FLAGS.samplers[0], tuple(FLAGS.remat), FLAGS.time_batch,
        FLAGS.iters)
  else:
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
    atomic_write(FLAGS.out, text + "\n")


if __name__ == "__main__":
  app.run(main)
