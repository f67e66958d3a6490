"""Throughput benchmarks, printed as JSON (and written to --out).

  python launch/bench.py --suite=unet --size=cifar --batch=256 --dtype=bfloat16     # on a GPU
  python launch/bench.py --suite=unet --size=tiny                                   # on a CPU
  python launch/bench.py --suite=unet --size=cifar --batch=8 --peer=torch           # + diffusers, same weights

Suites (``jaxdiff.bench``): ``unet`` (U-Net forward, train step, 75-step purification per sampler; ``--peer=torch``
adds diffusers' UNet2DModel on the same weights), ``certify`` (denoised-smoothing draws/s against a host-loop
baseline, measured in the same run; ``--peer=torch`` adds Carlini et al.'s PyTorch loop on the same weights),
``attack`` (PGD with the full gradient through t̄-step DDPM purification, images/s; ``--peer=torch``: DiffPure's
loop; ``--autoattack`` adds AutoAttack-standard, its peer torchattacks' port, every point kept robust), ``ops`` (the
CIFAR or digits U-Net's convolutions, GroupNorm and attention one by one, forward and forward + backward;
``--peer=torch`` times torch on the same shapes: where the CPU time goes) and ``memory`` (bytes of the
input gradient through purification per rematerialisation policy, from XLA's memory analysis of the compiled
program; ``--autoattack`` adds AutoAttack's programs).

  python launch/bench.py --suite=memory --size=cifar --batch=64 --samplers=ddpm     # compile only; CPU is enough
  python launch/bench.py --suite=memory --size=cifar --batch=64 --samplers=ddpm --remat=step --autoattack
  python launch/bench.py --suite=certify --size=digits --classifier=tiny --batch=500 --peer=torch
  python launch/bench.py --suite=certify --pipeline=carlini --size=cifar --n=100000 --batch=500 --peer=torch
  python launch/bench.py --suite=attack --size=digits --classifier=tiny --batch=8 --peer=torch
  python launch/bench.py --suite=attack --size=digits --classifier=tiny --batch=8 --pgd_steps=0 --autoattack \
      --aa_steps=3 --aa_queries=20 --peer=torch
  XLA_FLAGS=--xla_cpu_use_onednn=true python launch/bench.py --suite=ops --batch=8 --peer=torch
  python launch/bench.py --suite=ops --size=digits --batch=500 --peer=torch        # the digits U-Net's shapes
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("suite", "unet", ["unet", "certify", "attack", "ops", "memory"], "What to benchmark.")
flags.DEFINE_enum("size", "tiny", ["tiny", "digits", "cifar"], "Model size: CIFAR-10 DDPM or small CPU ones.")
flags.DEFINE_integer("batch", 0, "Batch size (0: 256 for cifar, 32 otherwise).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (params stay fp32).")
flags.DEFINE_integer("iters", 3, "Timed calls per measurement.")
flags.DEFINE_integer("t_bar", 75, "Purification timestep.")
flags.DEFINE_list("samplers", ["ddpm", "ddim", "sde", "ode"], "Samplers for the purification benchmark.")
flags.DEFINE_integer("n", 10_000, "certify: noise draws per image.")
flags.DEFINE_enum("classifier", "resnet50", ["resnet50", "resnet18", "vit", "tiny"],
                  "certify / attack: classifier behind the denoiser.")
flags.DEFINE_integer("pgd_steps", 20, "attack: PGD iterations (0: no PGD row).")
flags.DEFINE_integer("peer_pgd_steps", 0, "attack: time only this many of the torch peer's PGD steps (after one "
                     "warm-up step) and scale to --pgd_steps (0: time all).")
flags.DEFINE_enum("pipeline", "", ["", "carlini"], "certify: carlini = Carlini et al.'s improved-diffusion ADM U-Net "
                  "(cosine, 4,000 steps) + ViT-B/16 at 224 (--size=cifar: the full networks; tiny: CPU-test size); "
                  "its peer is the OpenAI UNetModel + timm ViT. Carlini et al. ran N = 100,000.")
flags.DEFINE_enum("peer", "", ["", "torch"], "unet / certify / attack: also time the PyTorch peer (same weights) in "
                  "this run; rows gain speedup_vs_peer = jaxdiff rate / peer rate.")
flags.DEFINE_bool("peer_compile", False, "unet / certify / attack: torch.compile the peer's networks (compiled in "
                  "the untimed warm-up).")
flags.DEFINE_list("remat", [], "memory: rematerialisation policies compiled (default none,step,dots); attack: the "
                  "policy of the purifier's gradient (default step).")
flags.DEFINE_integer("time_batch", 0, "memory: also run and time the gradient at this batch (0: compile only).")
flags.DEFINE_bool("autoattack", False, "memory: also compile AutoAttack's programs (APGD-CE/DLR with EOT 20, FAB-T, "
                  "Square) through the purifier and report their bytes; attack: add the AutoAttack-standard row.")
flags.DEFINE_integer("aa_steps", 100, "attack --autoattack: iterations of APGD-CE, APGD-T and FAB-T (AutoAttack: 100).")
flags.DEFINE_integer("aa_queries", 5000, "attack --autoattack: Square's queries (AutoAttack: 5,000).")
flags.DEFINE_integer("aa_buckets", 8, "attack --autoattack: each attack runs on the robust points padded to a "
                     "multiple of batch / aa_buckets (1: the whole batch every time).")
flags.DEFINE_float("aa_eps", 1e-4, "attack --autoattack: ℓ∞ radius in pixels, small so that every point stays robust "
                   "and every attack runs on every point on both sides (AutoAttack's worst-case work).")
flags.DEFINE_string("out", "", "Also write the JSON here.")
flags.DEFINE_string("profile", "", "Write a jax.profiler trace of the whole suite (compilation included) to this folder "
                    "(view it with TensorBoard's profile plugin or Perfetto).")
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
  ucfg = unet_config(FLAGS.size, FLAGS.dtype)
  ccfg = ml_collections.ConfigDict(dict(CLASSIFIERS[FLAGS.classifier], image_size=ucfg.image_size,
                                        in_channels=ucfg.in_channels, num_classes=10, dtype=FLAGS.dtype))
  if FLAGS.suite in ("certify", "attack") or FLAGS.autoattack:
    info["classifier"] = FLAGS.classifier
  if FLAGS.profile:
    jax.profiler.start_trace(FLAGS.profile)
  if FLAGS.suite == "unet":
    extra, results = bench_unet(FLAGS.size, batch, FLAGS.dtype, FLAGS.iters, FLAGS.t_bar, FLAGS.samplers,
                                peer=FLAGS.peer, peer_compile=FLAGS.peer_compile)
  elif FLAGS.suite == "ops":
    from jaxdiff.bench.ops import bench_ops
    ops_size = "digits" if FLAGS.size == "digits" else "cifar"  # tiny: the CIFAR shapes, as before
    extra, results = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "shapes": ops_size}, bench_ops(
        batch, FLAGS.iters, FLAGS.peer, ops_size)
  elif FLAGS.suite == "memory":
    from jaxdiff.bench.memory import bench_memory
    extra, results = {"sampler": FLAGS.samplers[0], "t_bar": FLAGS.t_bar}, bench_memory(
        FLAGS.size, batch, FLAGS.dtype, FLAGS.t_bar, FLAGS.samplers[0], tuple(FLAGS.remat or ("none", "step", "dots")), FLAGS.time_batch,
        FLAGS.iters)
    if FLAGS.autoattack:
      from jaxdiff.bench.memory import bench_attack_memory
      results += bench_attack_memory(ucfg, ccfg, batch, FLAGS.t_bar, FLAGS.samplers[0])
  elif FLAGS.suite == "certify":
    extra, results = bench_certify_models(ucfg, ccfg, batch=batch, n=FLAGS.n, dtype=FLAGS.dtype,
                                          iters=FLAGS.iters, peer=FLAGS.peer,
                                          carlini=FLAGS.pipeline and ("cifar" if FLAGS.size == "cifar" else "tiny"),
                                          peer_compile=FLAGS.peer_compile)
    if FLAGS.pipeline:
      info.update(pipeline=FLAGS.pipeline, classifier="vit_base_patch16_224")
  else:
    from jaxdiff.bench.attack import bench_attack, bench_autoattack
    if not (FLAGS.pgd_steps or FLAGS.autoattack):
      raise app.UsageError("--suite=attack with --pgd_steps=0 measures nothing: give PGD steps or --autoattack")
    remat = (FLAGS.remat or ["step"])[0]
    extra, results = {}, []
    if FLAGS.pgd_steps:
      extra, results = bench_attack(ucfg, ccfg, batch=batch, t_bar=FLAGS.t_bar, steps=FLAGS.pgd_steps,
                                    iters=FLAGS.iters, peer=FLAGS.peer, remat=remat,
                                    peer_timed_steps=FLAGS.peer_pgd_steps or None, peer_compile=FLAGS.peer_compile)
    if FLAGS.autoattack:
      extra, rows = bench_autoattack(ucfg, ccfg, batch=batch, t_bar=FLAGS.t_bar, eps=FLAGS.aa_eps,
                                     steps=FLAGS.aa_steps, queries=FLAGS.aa_queries, iters=FLAGS.iters,
                                     peer=FLAGS.peer, remat=remat, compact_buckets=FLAGS.aa_buckets,
                                     peer_compile=FLAGS.peer_compile)
      results += rows
  if FLAGS.profile:
    jax.profiler.stop_trace()
    info["profile"] = FLAGS.profile
  report = {**info, **extra, "results": results}
  text = json.dumps(report, indent=2)
  print(text)
  if FLAGS.out:
    atomic_write(FLAGS.out, text + "\n")


if __name__ == "__main__":
  app.run(main)
