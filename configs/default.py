"""Shared defaults for every experiment; experiment files start from ``get_config()`` and edit it."""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "train_ddpm"
  c.seed = 0

  c.data = ml_collections.ConfigDict(dict(
      name="cifar10",       # cifar10 | cifar100 | celeb_a (tfds) | cifar10_archive | digits | synthetic
      image_size=32, data_dir="", path="", num_examples=1024, channels=3, num_classes=10))

  c.model = ml_collections.ConfigDict(dict(  # Ho et al. CIFAR-10 U-Net
      name="unet", image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2),
      attention_resolutions=(16,), layers_per_block=2, norm_num_groups=32, dropout=0.1,
      dtype="float32", init_from=""))

  c.diffusion = ml_collections.ConfigDict(dict(schedule="linear", num_timesteps=1000))

  c.optim = ml_collections.ConfigDict(dict(  # DDPM: Adam 2e-4, 5k warm-up, clip 1
      name="adam", lr=2e-4, warmup_steps=5000, decay="constant", grad_clip=1.0, weight_decay=0.0,
      momentum=0.9))

  c.train = ml_collections.ConfigDict(dict(
      num_steps=800_000, batch_size=128, ema_decay=0.9999, log_every=100, checkpoint_every=5000,
      keep_checkpoints=3, sample_every=10_000, num_samples=64, sample_sampler="ddim", sample_steps=100,
      grid_scale=1, eval_every=1000, stop_at=0, label_smoothing=0.0))
  # PGD adversarial training of classifiers (DIFF2 §5: ℓ∞ 8/255, step 2/255, 8 steps)
  c.train.adversarial = ml_collections.ConfigDict(dict(enabled=False, eps=8 / 255, step_size=2 / 255, steps=8))
  return c


def add_evaluation(c, *, denoiser, classifier, samplers=("ddpm",), t_bar=75, num_steps=0):
  """Blocks shared by purification / certification / DIFF2 evaluation configs."""
  c.classifier = ml_collections.ConfigDict(dict(path=classifier))
  c.purify = ml_collections.ConfigDict(dict(
      denoiser=denoiser, dtype="", samplers=tuple(samplers), t_bar=t_bar, num_steps=num_steps,
      sampler_steps=dict(ddpm=0, ddim=0, sde=0, ode=0),  # per-sampler override of num_steps (0: use it)
      gradient="full", remat=True, diffusion=dict(schedule="linear", num_timesteps=1000)))
  c.attack = ml_collections.ConfigDict(dict(
      eps=8 / 255, norm="linf", pgd_steps=20, eot=1, autoattack=True, autoattack_version="rand",
      aa_steps=100, aa_targets=9, aa_queries=5000))
  c.eval = ml_collections.ConfigDict(dict(num_examples=512, stride=1, batch_size=64, grid_scale=4))
  return c


def add_certification(c, *, sigmas=(0.25, 0.5, 1.0), n=10_000, n0=100, alpha=0.001, num_classes=10):
  c.certify = ml_collections.ConfigDict(dict(
      sigmas=tuple(sigmas), n=n, n0=n0, alpha=alpha, num_classes=num_classes, batch_size=1000,
      denoise_steps=1, radii=(0.0, 0.25, 0.5, 0.75, 1.0)))
  return c


def add_diff2(c, *, surrogates, alpha=0.05, targeted=False):
  """DIFF2 defaults (Table 21): untargeted, full-size adversarial trigger α = 0.05 (Adam 0.1), entangled
  noise, truncated timestep 300 for trigger inputs, λ = 1, fine-tuning Adam 2e-4."""
  c.diff2 = ml_collections.ConfigDict(dict(
      trigger="adversarial",       # adversarial (Alg. 1) | input_specific (§5.5) | patch | blend | warp (Alg. 2)
      scheme="diff2",              # diff2 | trojdiff_patch | trojdiff_adversarial (§5.6, Eq. 14)
      trojdiff_gamma=0.6, input_specific_steps=10,
      alpha=alpha, patch_size=0, pattern="checkerboard", targeted=targeted, target_class=0,
      surrogates=tuple(surrogates), trigger_steps=1000, trigger_lr=0.1, trigger_batch=256,
      lam=1.0, t_trunc=300, entangled=True, poison_rate=0.0,
      reverse_target="adversarial", reverse_eps=8 / 255, reverse_steps=10,
      sweep_t_bar=(), sweep_alpha=(), sweep_trigger_size=(),  # Figures 4, 5, 6 (α, size: one run per value)
      transfer_classifiers=(),
      stop_after=""))              # "" (everything) | trigger | finetune
  c.train.update(use_ema=False)
  return c
