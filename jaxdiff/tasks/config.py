"""Experiment configs: every block's defaults, and next to it the table of rules its values must satisfy.

``configs/default.py`` re-exports ``get_config`` and the ``add_*`` block helpers; experiment files start from
them. ``validate(config)`` checks a whole config (types, ranges, names, cross-field rules, files that must
exist) before a task loads anything and raises ``ConfigError`` with one line naming the field:
"config.certify.n = 0: must be ≥ 1".
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import ml_collections

from jaxdiff.backdoor.pruning import REPAIR_LOSSES
from jaxdiff.convert import is_reference, parse_reference, resolve_path
from jaxdiff.data import CIFAR_BINARY
from jaxdiff.diffusion import SAMPLERS
from jaxdiff.errors import ConfigError
from jaxdiff.models import classifier_names

# ---------------------------------------------------------------- rules (the declarative form)


@dataclasses.dataclass(frozen=True)
class Rule:
  """``config.<path>`` must satisfy ``ok(value, config)``; ``must`` says how, for the message. ``when(config)``
  limits the rule to some tasks or settings."""
  path: str
  ok: Callable[[Any, Any], bool]
  must: str | Callable[[], str]  # a callable when the message needs the run's state (e.g. the device count)
  when: Callable[[Any], bool] = lambda c: True


def _is_int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(path, lo=None, hi=None, **kw):
  must = "must be an integer" + (f" ≥ {lo}" if lo is not None else "") + (f" and ≤ {hi}" if hi is not None else "")
  return Rule(path, lambda v, c: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), must, **kw)


def number(path, lo=None, hi=None, lo_open=False, hi_open=False, **kw):
  def ok(v, c):
    return _is_num(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
  lo_s = "" if lo is None else (f" > {lo:g}" if lo_open else f" ≥ {lo:g}")
  hi_s = "" if hi is None else (f" < {hi:g}" if hi_open else f" ≤ {hi:g}")
  return Rule(path, ok, "must be a number" + lo_s + (" and" if lo_s and hi_s else "") + hi_s, **kw)


def one_of(path, choices, **kw):
  choices = tuple(choices)
  return Rule(path, lambda v, c: v in choices, f"must be one of {', '.join(map(repr, choices))}", **kw)


def each(path, rule_of_value, must, nonempty=True, **kw):
  def ok(v, c):
    return isinstance(v, (tuple, list)) and (len(v) > 0 or not nonempty) and all(rule_of_value(x) for x in v)
  return Rule(path, ok, ("must be a non-empty list whose values " if nonempty else "values ") + must, **kw)


def _model_folder(v):
  """A model folder on disk, or a well-formed hf: / url: / train: reference (fetched or trained by
  ``jaxdiff.tasks.run`` before the task starts; a malformed one raises its own ``ConfigError``)."""
  if is_reference(v):
    return bool(parse_reference(v))
  p = resolve_path(v)
  return bool(p) and os.path.isdir(p) and (
      os.path.isfile(os.path.join(p, "meta.json")) or
      any(os.path.isfile(os.path.join(p, sub, "diffusion_pytorch_model.safetensors")) for sub in ("", "unet")))


def _file(v):
  """A file on disk (``assets:`` resolved), or a well-formed hf: / url: reference."""
  if is_reference(v):
    return bool(parse_reference(v))
  return os.path.isfile(resolve_path(v))


MODEL_HINT = "set --config.{path}=DIR, or a reference: hf:OWNER/NAME[@REV][/SUB], url:https://…, train:CONFIG.py"


def model_folder(path, what, **kw):
  """A folder holding a model: a jaxdiff export (params.safetensors + meta.json) or a diffusers folder."""
  return Rule(path, lambda v, c: _model_folder(v), f"must name an existing {what}; " + MODEL_HINT.format(path=path), **kw)


def task_is(*names):
  return lambda c: c.task in names


def _get(config, path):
  v = config
  for part in path.split("."):
    v = v[part]
  return v


def _has(config, path):
  v = config
  for part in path.split("."):
    if not hasattr(v, "keys") or part not in v:
      return False
    v = v[part]
  return True


def validate(config, rules=None):
  """Checks every rule whose field exists in ``config``; raises ``ConfigError`` on the first violation."""
  if rules is None:
    rules = RULES + [r for name in (config.zoo.models if _has(config, "zoo.models") else ()) for r in zoo_entry_rules(name)]
  for r in rules:
    if not _has(config, r.path) or not r.when(config):
      continue
    v = _get(config, r.path)
    try:
      good = r.ok(v, config)
    except ConfigError:
      raise  # a malformed reference says how itself
    except (TypeError, ValueError, KeyError, AttributeError):
      good = False
    if not good:
      must = r.must() if callable(r.must) else r.must
      if v == "":
        raise ConfigError(f"config.{r.path} is empty: it {must}")
      shown = "{...}" if isinstance(v, ml_collections.ConfigDict) else repr(tuple(v) if isinstance(v, list) else v)
      raise ConfigError(f"config.{r.path} = {shown}: {must}")


# ---------------------------------------------------------------- base blocks


def get_config():
  """Defaults every experiment shares: task, seed, data, model (Ho et al.'s CIFAR-10 U-Net), diffusion,
  optimiser and training."""
  c = ml_collections.ConfigDict()
  c.task = "train_ddpm"
  c.seed = 0
  c.overwrite = False  # True: replace checkpoints and results a workdir holds from other settings

  c.data = ml_collections.ConfigDict(dict(
      name="cifar10",       # cifar10 | cifar100 | celeb_a (tfds) | cifar10_archive | cifar100_archive | fashion_mnist |
                            #   digits | synthetic
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
      grid_scale=1, eval_every=1000, stop_at=0, label_smoothing=0.0,
      augment="",  # classifiers: "" | crop_flip (4-pixel padded random crop + horizontal flip, on device)
      use_ema=False))  # fine-tunes (DIFF2) export the EMA weights instead of the last ones
  # PGD adversarial training of classifiers (DIFF2 §5: ℓ∞ 8/255, step 2/255, 8 steps)
  c.train.adversarial = ml_collections.ConfigDict(dict(enabled=False, eps=8 / 255, step_size=2 / 255, steps=8))
  return c


# Published models and data that CIFAR / ImageNet configs fetch by default (``convert.fetch``; README "CIFAR-10")
DDPM_CIFAR10 = "hf:google/ddpm-cifar10-32"  # Ho et al.'s CIFAR-10 DDPM in diffusers format (safetensors)
OPENAI_CHECKPOINTS = "url:https://openaipublic.blob.core.windows.net/diffusion/"
ADM_CIFAR10 = OPENAI_CHECKPOINTS + "march-2021/cifar10_uncond_50M_500K.pt"  # improved diffusion (Carlini et al.)
ADM_IMAGENET256 = OPENAI_CHECKPOINTS + "jul-2021/256x256_diffusion_uncond.pt"  # guided diffusion, unconditional
INCEPTION_FID = ("url:https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")  # pytorch-fid's FID Inception-v3 weights
CIFAR_SURROGATE = "train:configs/classifier_cifar.py"  # ResNet-18, trained as a stage of the run
CIFAR_TARGET = "train:configs/classifier_cifar.py:model.name=resnet50"


def cifar_data(c, name="cifar10"):
  """``config.data`` of CIFAR-10 / -100 from the binary archive that tfds itself downloads, fetched by a url:
  reference pinned to its sha256 (needs neither TensorFlow nor unpickling); ``--config.data.name=cifar10`` with
  ``data.data_dir`` takes the tfds route instead."""
  c.data.update(name=f"{name}_archive", path=CIFAR_BINARY[name], image_size=32, channels=3,
                num_classes=100 if name == "cifar100" else 10)
  return c


TASKS = ("train_ddpm", "train_classifier", "purification", "certify", "diff2", "baddiffusion", "zoo", "scan",
         "defend_zoo")
DATASETS = ("cifar10", "cifar100", "celeb_a", "mnist", "fashion_mnist", "imagenet2012", "cifar10_archive", "cifar100_archive", "digits", "digits_rings",
            "synthetic")
_training = task_is("train_ddpm", "train_classifier", "diff2", "baddiffusion", "zoo")

BASE_RULES = [
    one_of("task", TASKS),
    integer("seed", 0),
    one_of("overwrite", (False, True)),
    one_of("data.name", DATASETS),
    integer("data.image_size", 1),
    Rule("data.path", lambda v, c: _file(v), "must be the path of a CIFAR archive (…-python.tar.gz or "
         "…-binary.tar.gz) or a url: reference to one",
         when=lambda c: c.data.name.endswith("_archive")),
    integer("data.num_examples", 1, when=lambda c: c.data.name == "synthetic"),
    integer("data.channels", 1),
    integer("data.num_classes", 2),
    one_of("model.name", ("unet",) + tuple(classifier_names())),
    integer("model.image_size", 1),
    integer("model.in_channels", 1),
    one_of("model.dtype", ("float32", "bfloat16")),
    Rule("model.init_from", lambda v, c: not v or _model_folder(v), "must be empty or name an existing model export"),
    one_of("diffusion.schedule", ("linear", "cosine")),
    integer("diffusion.num_timesteps", 2),
    one_of("optim.name", ("adam", "adamw", "sgd"), when=_training),
    number("optim.lr", 0, lo_open=True, when=_training),
    integer("optim.warmup_steps", 0),
    one_of("optim.decay", ("constant", "cosine")),
    number("optim.grad_clip", 0),
    number("optim.weight_decay", 0),
    number("optim.momentum", 0, 1),
    integer("train.num_steps", 1, when=_training),
    integer("train.batch_size", 1, when=_training),
    Rule("train.batch_size", lambda v, c: v % jax.device_count() == 0,
         lambda: f"must be divisible by the {jax.device_count()} devices (pick a multiple)", when=_training),
    number("train.ema_decay", 0, 1, hi_open=True),
    integer("train.log_every", 1),
    integer("train.checkpoint_every", 1),
    integer("train.keep_checkpoints", 1),
    integer("train.sample_every", 0),
    integer("train.num_samples", 1),
    one_of("train.sample_sampler", SAMPLERS),
    integer("train.sample_steps", 1),
    integer("train.eval_every", 0),
    integer("train.stop_at", 0),
    number("train.label_smoothing", 0, 1, hi_open=True),
    one_of("train.augment", ("", "crop_flip")),
    number("train.adversarial.eps", 0),
    number("train.adversarial.step_size", 0, lo_open=True),
    integer("train.adversarial.steps", 1),
]

# ---------------------------------------------------------------- evaluation blocks


def add_evaluation(c, *, denoiser, classifier, samplers=("ddpm",), t_bar=75, num_steps=0):
  """Blocks shared by purification / certification / DIFF2 evaluation configs. ``denoiser``/``classifier``:
  model folders ("assets:digits/ddpm" for the shipped ones; "" where the user must supply one)."""
  c.classifier = ml_collections.ConfigDict(dict(path=classifier, dtype=""))  # dtype "": as exported | bfloat16
  c.purify = ml_collections.ConfigDict(dict(
      denoiser=denoiser, dtype="", samplers=tuple(samplers), t_bar=t_bar, num_steps=num_steps,
      sampler_steps={"ddpm": 0, "ddim": 0, "sde": 0, "ode": 0, "dpm_solver++": 0},  # per-sampler override of num_steps (0: use it)
      gradient="full", remat=True, diffusion=dict(schedule="linear", num_timesteps=1000),
      ddpm_variance="posterior",  # DDPM step variance: posterior β̃ | beta β | learned (ADM's learned-σ output)
      reproject_eps=0.0,  # > 0: re-projection defence, x̂ kept in the ℓ∞ ball of this radius around x (Table 8)
      one_step=False))  # DIFF2 Table 7: also evaluate one-shot x̂0 from t̄
  c.attack = ml_collections.ConfigDict(dict(
      eps=8 / 255, norm="linf", pgd_steps=20, eot=1, autoattack=True, autoattack_version="rand",
      aa_steps=100, aa_targets=9, aa_queries=5000))
  c.eval = ml_collections.ConfigDict(dict(num_examples=512, stride=1, batch_size=64, grid_scale=4,
                                          robust_examples=512))  # inputs attacked for robust accuracy (DIFF2)
  return c


def _steps_fit(sampler):
  return lambda v, c: v == 0 or sampler not in ("ddpm", "ddim") or v <= c.purify.t_bar


EVALUATION_RULES = [
    model_folder("classifier.path", "classifier export (params.safetensors + meta.json; train one with "
                 "configs/classifier_digits.py or configs/classifier_cifar.py)"),
    model_folder("purify.denoiser", "denoiser: a jaxdiff U-Net export or a diffusers folder (config.json + "
                 "diffusion_pytorch_model.safetensors)"),
    one_of("purify.dtype", ("", "float32", "bfloat16")),
    one_of("classifier.dtype", ("", "float32", "bfloat16")),
    each("purify.samplers", lambda s: s in SAMPLERS, f"are in {SAMPLERS}"),
    Rule("purify.t_bar", lambda v, c: _is_int(v) and 1 <= v <= c.purify.diffusion.num_timesteps,
         "must be an integer timestep in [1, purify.diffusion.num_timesteps]"),
    integer("purify.num_steps", 0), number("purify.reproject_eps", 0, 1),
    Rule("purify.num_steps", lambda v, c: v <= c.purify.t_bar or not set(c.purify.samplers) & {"ddpm", "ddim"},
         "must be ≤ purify.t_bar for the discrete samplers (ddpm, ddim)"),
    *[integer(f"purify.sampler_steps.{s}", 0) for s in SAMPLERS],
    *[Rule(f"purify.sampler_steps.{s}", _steps_fit(s), "must be ≤ purify.t_bar") for s in ("ddpm", "ddim")],
    one_of("purify.gradient", ("full", "bpda")),
    one_of("purify.diffusion.schedule", ("linear", "cosine")),
    one_of("purify.ddpm_variance", ("posterior", "beta", "learned")),
    integer("purify.diffusion.num_timesteps", 2),
    number("attack.eps", 0),
    one_of("attack.norm", ("linf", "l2")),
    integer("attack.pgd_steps", 0),
    integer("attack.eot", 1),
    one_of("attack.autoattack_version", ("standard", "rand")),
    integer("attack.aa_steps", 1),
    integer("attack.aa_targets", 1),
    integer("attack.aa_queries", 1),
    integer("eval.num_examples", 1),
    integer("eval.stride", 1),
    integer("eval.batch_size", 1),
    integer("eval.grid_scale", 1),
    integer("eval.robust_examples", 0),
]


def add_certification(c, *, sigmas=(0.25, 0.5, 1.0), n=10_000, n0=100, alpha=0.001, num_classes=10):
  c.certify = ml_collections.ConfigDict(dict(
      sigmas=tuple(sigmas), n=n, n0=n0, alpha=alpha, num_classes=num_classes, batch_size=1000,
      denoise_steps=1, radii=(0.0, 0.25, 0.5, 0.75, 1.0),
      num_images=500))  # DIFF2 Table 6: images certified per (model, inputs)
  return c


CERTIFY_RULES = [
    each("certify.sigmas", lambda s: _is_num(s) and s > 0, "are noise levels σ > 0 (pixel space)"),
    integer("certify.n", 1, when=task_is("certify")),
    integer("certify.n", 0, when=lambda c: c.task != "certify"),  # DIFF2: 0 skips Table 6
    integer("certify.n0", 1),
    number("certify.alpha", 0, 1, lo_open=True, hi_open=True),
    integer("certify.num_classes", 2),
    integer("certify.batch_size", 1),
    integer("certify.denoise_steps", 1),
    each("certify.radii", lambda r: _is_num(r) and r >= 0, "are radii ≥ 0"),
    integer("certify.num_images", 1),
]

# ---------------------------------------------------------------- DIFF2


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
  return c


DIFF2_TRIGGERS = ("adversarial", "input_specific", "patch", "blend", "warp")
DIFF2_SCHEMES = ("diff2", "trojdiff_patch", "trojdiff_adversarial")
DIFF2_RULES = [
    one_of("diff2.trigger", DIFF2_TRIGGERS),
    one_of("diff2.scheme", DIFF2_SCHEMES),
    Rule("diff2.scheme", lambda v, c: v == "diff2" or c.diff2.trigger in ("adversarial", "blend"),
         "(Eq. 14) adds a pattern r to the noise: use trigger='adversarial' or 'blend'"),
    Rule("diff2.poison_rate", lambda v, c: not v or c.diff2.scheme == "diff2",
         "> 0 (poisoning) only applies to scheme='diff2'"),
    number("diff2.alpha", 0, 1, lo_open=True, hi_open=True),
    integer("diff2.patch_size", 0),
    Rule("diff2.patch_size", lambda v, c: v < c.data.image_size, "must be smaller than the image (data.image_size)"),
    one_of("diff2.pattern", ("checkerboard", "sinusoid")),
    Rule("diff2.target_class", lambda v, c: _is_int(v) and 0 <= v < c.data.num_classes,
         "must be a class index in [0, data.num_classes)"),
    each("diff2.surrogates", _model_folder, "are existing classifier exports"),
    integer("diff2.trigger_steps", 1),
    number("diff2.trigger_lr", 0, lo_open=True),
    integer("diff2.trigger_batch", 1),
    number("diff2.lam", 0),
    Rule("diff2.t_trunc", lambda v, c: _is_int(v) and 1 <= v <= c.purify.diffusion.num_timesteps,
         "must be an integer in [1, purify.diffusion.num_timesteps]"),
    number("diff2.poison_rate", 0, 1),
    one_of("diff2.reverse_target", ("adversarial", "identity")),
    number("diff2.reverse_eps", 0),
    integer("diff2.reverse_steps", 1),
    number("diff2.trojdiff_gamma", 0, 1),
    integer("diff2.input_specific_steps", 1),
    each("diff2.sweep_t_bar", lambda v: _is_int(v) and v >= 1, "are timesteps ≥ 1", nonempty=False),
    Rule("diff2.sweep_alpha", lambda v, c: not v or (c.diff2.trigger not in ("patch", "warp")
                                                    and all(_is_num(a) and 0 < a <= 1 for a in v)),
         "must hold values in (0, 1], for the blending triggers (adversarial, input_specific, blend)"),
    Rule("diff2.sweep_trigger_size", lambda v, c: not v or (c.diff2.trigger in ("adversarial", "patch", "blend")
                                                           and all(_is_int(k) and k >= 1 for k in v)),
         "must hold patch sizes ≥ 1, for trigger adversarial, patch or blend"),
    each("diff2.transfer_classifiers", _model_folder, "are existing classifier exports", nonempty=False),
    one_of("diff2.stop_after", ("", "trigger", "finetune")),
]

RULES = BASE_RULES + EVALUATION_RULES + CERTIFY_RULES + DIFF2_RULES

DEFENSES = ("reproject", "entropy", "elijah", "advtrain", "anp")


def entropy_detector(threshold=0.0):
  """Settings of the entropy-based detector (DIFF2 §5.7), shared by ``defense`` and ``scan``."""
  return dict(
      entropy_trials=5, entropy_inputs=100,  # trials per model × clean reference inputs per trial
      entropy_steps=20,                      # sampler network calls from t = T back to 0
      entropy_threshold=threshold,           # nats; flagged below it (defense: 0 = calibrated on the population)
      iqr_k=1.5, moving_window=3)            # the two filters over a model's trial entropies


def entropy_rules(block):
  return [integer(f"{block}.entropy_trials", 1), integer(f"{block}.entropy_inputs", 1),
          integer(f"{block}.entropy_steps", 1), number(f"{block}.entropy_threshold", 0),
          number(f"{block}.iqr_k", 0), integer(f"{block}.moving_window", 1)]


def anp_settings(lrs=(1e-5, 5e-5, 1e-4, 2e-4)):
  """Settings of Adversarial Neuron Pruning (``backdoor/anp.py``), shared by ``defense`` and ``baddiffusion``."""
  return dict(
      anp_lrs=lrs,                        # mask learning rates swept (DIFF2 Fig. 11; BadDiffusion App. B)
      anp_eps=0.4, anp_steps=1, anp_alpha=0.2,  # ANP's perturbation budget, ascent steps, natural-loss weight
      anp_iterations=100, anp_batch=32,   # clean training batches the masks are fitted on
      anp_threshold=0.2)                  # channels whose mask ends below it are pruned


def anp_rules(block):
  return [each(f"{block}.anp_lrs", lambda v: _is_num(v) and v >= 0, "are learning rates ≥ 0", nonempty=False),
          number(f"{block}.anp_eps", 0), integer(f"{block}.anp_steps", 1), number(f"{block}.anp_alpha", 0, 1),
          integer(f"{block}.anp_iterations", 1), integer(f"{block}.anp_batch", 1),
          number(f"{block}.anp_threshold", 0, 1)]


def add_defense(c, name):
  """A DIFF2 defence (report.json "defense" and "rows"): ``reproject`` is measured on φ and φ* after the
  evaluation (Table 8); ``entropy`` (§5.7) trains and measures a population of benign and backdoored models;
  ``elijah`` (§5.6) runs Elijah on that population, beside the entropy detector; ``advtrain`` (Table 9) runs
  DIFF2 non-adaptive and adaptive against adversarially trained classifiers; ``anp`` prunes φ* by ANP."""
  c.defense = ml_collections.ConfigDict(dict(
      name=name,                          # reproject (Table 8) | entropy (§5.7, Figs. 9–10) | elijah (§5.6) |
                                          # advtrain (Table 9) | anp (App. C.1, Fig. 11)
      reproject_eps=(8 / 255, 16 / 255),  # ε_r of the re-projection rows (pixel ℓ∞ radius)
      population_benign=10,               # entropy: benign fine-tunes (clean loss only, one seed each) besides φ
      population_untargeted=5, population_targeted=5,  # backdoored φ* (targets cycle over the classes)
      population_steps=100,               # fine-tuning steps per population model
      heldout_seeds=0,                    # entropy: held-out benign and untargeted models per setting below, seeds
                                          #   the population never uses, judged with its threshold (TPR / FPR)
      heldout_steps=(100, 300, 1000),     #   their fine-tune lengths (each at diff2.alpha)
      heldout_alphas=(),                  #   and other DIFF2 α (each at population_steps)
      **entropy_detector(),
      elijah_iterations=100, elijah_lambda=0.5,  # elijah (§5.6): Elijah's inversion and forest on the population
      elijah_batch=16, elijah_steps=20,  # noise batch of the inversion; DDPM steps of the samples from ε + τ
      advtrain_targets=(),                # advtrain (Table 9): adversarially trained target classifier exports
      adaptive_surrogates=(),             #   and surrogates the adaptive trigger is optimised on
      advtrain_attacks=("untargeted", "targeted"),
      **anp_settings(),                   # anp (App. C.1, Fig. 11)
      anp_models=("backdoored",)))        # which of benign / backdoored ANP prunes
  return c


DEFENSE_RULES = [
    one_of("defense.name", DEFENSES),
    Rule("defense.name", lambda v, c: c.task == "diff2", "is a DIFF2 defence: use it with task='diff2'"),
    each("defense.reproject_eps", lambda e: _is_num(e) and 0 < e <= 1, "are radii in (0, 1] (pixel ℓ∞)"),
    integer("defense.population_benign", 0), integer("defense.population_untargeted", 0),
    integer("defense.population_targeted", 0), integer("defense.population_steps", 1),
    *entropy_rules("defense"),
    integer("defense.elijah_iterations", 1), number("defense.elijah_lambda", 0), integer("defense.elijah_batch", 2),
    integer("defense.elijah_steps", 1),
    each("defense.advtrain_targets", _model_folder, "are existing classifier exports (adversarially trained, e.g. "
         "by configs/classifier_digits_adv.py)", when=lambda c: c.defense.name == "advtrain"),
    each("defense.adaptive_surrogates", _model_folder, "are existing classifier exports (adversarially trained "
         "surrogates for the adaptive trigger)", when=lambda c: c.defense.name == "advtrain"),
    *anp_rules("defense"),
    Rule("defense.anp_lrs", lambda v, c: c.defense.name != "anp" or len(v) > 0, "must name ≥ 1 learning rate"),
    each("defense.anp_models", lambda v: v in ("benign", "backdoored"), "are 'benign' or 'backdoored'"),
    each("defense.advtrain_attacks", lambda v: v in ("untargeted", "targeted"), "are 'untargeted' or 'targeted'"),
    Rule("defense.population_untargeted", lambda v, c: c.defense.name not in ("entropy", "elijah")
         or v + c.defense.population_targeted >= 1 or (c.defense.name == "entropy" and c.defense.entropy_threshold),
         "+ defense.population_targeted must be ≥ 1: the threshold is calibrated between benign and backdoored "
         "models (or give defense.entropy_threshold)"),
    integer("defense.heldout_seeds", 0),
    each("defense.heldout_steps", lambda v: isinstance(v, int) and v >= 1, "are fine-tuning step counts ≥ 1",
         nonempty=False),
    each("defense.heldout_alphas", lambda v: _is_num(v) and 0 < v <= 1, "are DIFF2 α in (0, 1]", nonempty=False),
]
RULES += DEFENSE_RULES

# ---------------------------------------------------------------- BadDiffusion


def add_baddiffusion(c, *, trigger="stop_sign", target="hat", trigger_size=14, poison_rate=0.1):
  """BadDiffusion defaults (Chou et al. 2023): fine-tune ``config.model.init_from`` (the clean DDPM) on a
  poisoned dataset, then sample clean and triggered noise from the clean and the backdoored model."""
  c.baddiffusion = ml_collections.ConfigDict(dict(
      trigger=trigger,             # grey_box | stop_sign | eyeglasses
      target=target,               # noshift | shift | corner | shoe | hat | cat
      trigger_size=trigger_size,   # 18 | 14 | 11 | 8 | 4 at 32×32 (scaled with the image)
      poison_rate=poison_rate,     # fraction of each batch's rows replaced by (trigger-stamped x, target)
      samplers=("ddpm",),          # samplers the evaluation generates with
      sample_steps=0,              # network evaluations per sample (0: every index, the ancestral DDPM chain)
      clip=(False, True),          # rows without / with the clipping defence (clip x̂0 to [−1, 1] each step)
      num_samples=128,             # triggered samples per row (MSE, SSIM, ASR)
      fid_samples=512,             # clean samples per row for the FID
      sample_batch=256,
      mse_threshold=1e-3,          # ASR: fraction of triggered samples with MSE < this (Diff-Cleanse's κ_m)
      fid_features="classifier",   # classifier (penultimate layer of fid_classifier) | inception (pool3)
      fid_classifier="",           # classifier export whose features the FID uses (fid_features=classifier)
      inception_weights="",        # pt_inception-2015-12-05 weights, converted (fid_features=inception)
      fid_reference_split="train",  # the data split the FID compares with
      inpainting=(),               # corruptions of App. C to inpaint: blur | line | box
      inpainting_samples=64,       # test images per corruption
      sweep_poison_rate=(), sweep_triggers=(), sweep_targets=(),  # grids of sub-runs (Figs. 2, tables)
      **anp_settings(lrs=())))     # App. B: ANP-pruned backdoored model per rate (report "anp"); () = none
  return c


def _sizes_fit(v, c):
  return c.baddiffusion.trigger == "eyeglasses" or (_is_int(v) and 1 <= v <= 30)


BADDIFFUSION_RULES = [
    one_of("baddiffusion.trigger", ("grey_box", "stop_sign", "eyeglasses")),
    one_of("baddiffusion.target", ("noshift", "shift", "corner", "shoe", "hat", "cat")),
    Rule("baddiffusion.trigger_size", _sizes_fit, "must be an integer in [1, 30] (a size at 32×32: 18, 14, 11, 8, 4), "
         "smaller than the image"),
    number("baddiffusion.poison_rate", 0, 1),
    each("baddiffusion.samplers", lambda s: s in SAMPLERS, f"are in {SAMPLERS}"),
    integer("baddiffusion.sample_steps", 0),
    each("baddiffusion.clip", lambda v: v in (False, True), "are False or True"),
    each("baddiffusion.inpainting", lambda v: v in ("blur", "line", "box"), "are blur, line or box", nonempty=False),
    integer("baddiffusion.inpainting_samples", 1),
    *anp_rules("baddiffusion"),
    integer("baddiffusion.num_samples", 1),
    integer("baddiffusion.fid_samples", 2),
    integer("baddiffusion.sample_batch", 1),
    number("baddiffusion.mse_threshold", 0, lo_open=True),
    one_of("baddiffusion.fid_features", ("classifier", "inception")),
    model_folder("baddiffusion.fid_classifier", "classifier export whose penultimate features the FID uses",
                 when=lambda c: c.baddiffusion.fid_features == "classifier"),
    Rule("baddiffusion.inception_weights", lambda v, c: _file(v),
         "must be pytorch-fid's pt_inception-2015-12-05 .pth (read with torch's weights-only loader) or its "
         "converted .safetensors; set --config.baddiffusion.inception_weights=FILE",
         when=lambda c: c.baddiffusion.fid_features == "inception"),
    one_of("baddiffusion.fid_reference_split", ("train", "test")),
    each("baddiffusion.sweep_poison_rate", lambda v: _is_num(v) and 0 <= v <= 1, "are rates in [0, 1]",
         nonempty=False),
    each("baddiffusion.sweep_triggers", lambda v: v in ("grey_box", "stop_sign", "eyeglasses"),
         "are trigger names", nonempty=False),
    each("baddiffusion.sweep_targets", lambda v: v in ("noshift", "shift", "corner", "shoe", "hat", "cat"),
         "are target names", nonempty=False),
    Rule("model.init_from", lambda v, c: _model_folder(v),
         "must name the clean DDPM to backdoor (a jaxdiff export or a diffusers folder)",
         when=task_is("baddiffusion")),
    Rule("model.in_channels", lambda v, c: v in (1, 3), "must be 1 or 3 for BadDiffusion's patterns",
         when=task_is("baddiffusion")),
]

RULES += BADDIFFUSION_RULES

# ---------------------------------------------------------------- the zoo of clean and backdoored DDPMs

ZOO_ATTACKS = ("clean", "baddiffusion", "villandiffusion", "trojdiff_d2i", "trojdiff_in_d2d", "trojdiff_out_d2d")


def zoo_entry(attack="clean", *, seed=0, steps=0, lr=0.0, trigger="stop_sign", trigger_size=18, target="hat",
              target_class=0, poison_rate=0.1, psi=1.0, trojan_trigger="blend", sampler=None):
  """One model of ``config.zoo.models``: fine-tuned ``steps`` steps (0: the initial model) from
  ``model.init_from`` with ``seed`` (and ``lr`` when > 0), planting ``attack``. ``sampler``: the sampler it is
  built for and measured with (default: ddpm for clean/BadDiffusion, ddim for VillanDiffusion/TrojDiff)."""
  if sampler is None:
    sampler = "ddpm" if attack in ("clean", "baddiffusion") else "ddim"
  return ml_collections.ConfigDict(dict(
      attack=attack, seed=seed, steps=steps, lr=lr, trigger=trigger, trigger_size=trigger_size, target=target,
      target_class=target_class, poison_rate=poison_rate, psi=psi, trojan_trigger=trojan_trigger, sampler=sampler))


def add_zoo(c, models):
  """Zoo defaults: ``models`` maps names to ``zoo_entry`` specs; the measurement settings are shared."""
  c.zoo = ml_collections.ConfigDict(dict(
      models=ml_collections.ConfigDict(models),
      only=(),                     # names to build and measure now; () = every entry (clean rows still use every trigger)
      sample_steps={"ddpm": 100, "ddim": 50, "dpm_solver++": 20, "sde": 100, "ode": 50},  # network calls per sample
      compare_samplers=("ddim", "dpm_solver++"),  # backdoored models are also measured with these
      num_samples=64,              # triggered samples per backdoored model and sampler (ASR)
      clean_trigger_samples=32,    # triggered samples per clean model and zoo trigger
      fid_samples=192, sample_batch=256,
      mse_threshold=1e-3,          # image targets: hit when the MSE to the target is below this (pixel space)
      fid_features="classifier",   # classifier (penultimate layer of fid_classifier) | inception (pool3)
      fid_classifier="",           # classifier export whose penultimate features the FID uses
      inception_weights="",        # pt_inception-2015-12-05 weights, converted (fid_features=inception)
      class_classifier="",         # classifier export that scores In-D2D targets (a class of the data)
      out_classifier="",           # classifier of data + the Out-D2D class (label 10) [+ reject]; "" trains one (digits)
      out_classifier_steps=400,
      fid_reference_split="train"))
  return c


def zoo_entry_rules(name):
  p = f"zoo.models.{name}"
  image_target = lambda c: c.zoo.models[name].attack in ("baddiffusion", "villandiffusion", "trojdiff_d2i")
  return [
      one_of(f"{p}.attack", ZOO_ATTACKS),
      integer(f"{p}.seed", 0), integer(f"{p}.steps", 0), number(f"{p}.lr", 0),
      Rule(f"{p}.steps", lambda v, c: v > 0 or c.zoo.models[name].attack == "clean",
           "must be ≥ 1 for a backdoored model (0 only exports the initial model, for clean entries)"),
      one_of(f"{p}.trigger", ("grey_box", "stop_sign", "eyeglasses")),
      Rule(f"{p}.trigger_size", lambda v, c: _is_int(v) and 1 <= v <= 30, "must be an integer in [1, 30] (at 32×32)"),
      one_of(f"{p}.target", ("noshift", "shift", "corner", "shoe", "hat", "cat"), when=image_target),
      Rule(f"{p}.target_class", lambda v, c: _is_int(v) and 0 <= v < c.data.num_classes,
           "must be a class index in [0, data.num_classes)"),
      number(f"{p}.poison_rate", 0, 1, lo_open=True,
             when=lambda c: c.zoo.models[name].attack != "clean"),
      number(f"{p}.psi", 0, 1),
      Rule(f"{p}.psi", lambda v, c: v == 1.0 or c.zoo.models[name].attack == "villandiffusion",
           "must be 1 except for villandiffusion (BadDiffusion is ψ = 1)"),
      one_of(f"{p}.trojan_trigger", ("blend", "patch")),
      one_of(f"{p}.sampler", SAMPLERS),
  ]


ZOO_RULES = [
    Rule("zoo.models", lambda v, c: len(v) > 0, "must name at least one model", when=task_is("zoo", "defend_zoo")),
    Rule("zoo.only", lambda v, c: isinstance(v, (tuple, list)) and all(n in c.zoo.models for n in v),
         "must list entries of config.zoo.models (or be empty for all of them)", when=task_is("zoo")),
    Rule("zoo.sample_steps", lambda v, c: all(_is_int(v[s]) and v[s] >= 1 for s in SAMPLERS),
         f"must give every sampler {SAMPLERS} a number of steps ≥ 1"),
    each("zoo.compare_samplers", lambda s: s in SAMPLERS, f"are in {SAMPLERS}", nonempty=False),
    integer("zoo.num_samples", 1), integer("zoo.clean_trigger_samples", 1), integer("zoo.fid_samples", 2),
    integer("zoo.sample_batch", 1), number("zoo.mse_threshold", 0, lo_open=True),
    one_of("zoo.fid_features", ("classifier", "inception")),
    model_folder("zoo.fid_classifier", "classifier export (the FID's features)",
                 when=lambda c: c.task in ("zoo", "defend_zoo") and c.zoo.fid_features == "classifier"),
    Rule("zoo.inception_weights", lambda v, c: _file(v),
         "must be pytorch-fid's pt_inception-2015-12-05 .pth (read with torch's weights-only loader) or its "
         "converted .safetensors; set --config.zoo.inception_weights=FILE",
         when=lambda c: c.task in ("zoo", "defend_zoo") and c.zoo.fid_features == "inception"),
    Rule("zoo.class_classifier", lambda v, c: _model_folder(v) or not any(
        m.attack == "trojdiff_in_d2d" for m in c.zoo.models.values()),
         "must name a classifier export of the data (it scores the In-D2D models)", when=task_is("zoo", "defend_zoo")),
    Rule("zoo.out_classifier", lambda v, c: not v or _model_folder(v), "must be empty or a classifier export"),
    integer("zoo.out_classifier_steps", 1),
    Rule("model.init_from", lambda v, c: _model_folder(v), "must name the clean DDPM the zoo starts from",
         when=task_is("zoo")),
]

RULES += ZOO_RULES

# ---------------------------------------------------------------- scan: backdoor detection of one model


ENTROPY_THRESHOLD_DIGITS = 2.03  # nats; calibrated on configs/diff2_detect_digits.py's 21 models (docs/results.md)
# that threshold judged on held-out digits models (configs/diff2_detect_digits_heldout.py): scan.mode=entropy says so
ENTROPY_HELDOUT_DIGITS = {"data": "digits", "threshold": ENTROPY_THRESHOLD_DIGITS, "tpr": 0.6, "fpr": 0.0,
                          "models": 10, "report": "docs/diff2_detect_digits_heldout.json"}


def add_scan(c, *, model="", encoder_path=""):
  """Scan defaults (Diff-Cleanse's BBTI: κ 0.9, κ_d 0.5, κ± 8.5 / 0.1, Adam 0.1, 100 iterations; Elijah λ 0.5)."""
  c.scan = ml_collections.ConfigDict(dict(
      model=model,                 # the model to scan: a jaxdiff export or a diffusers folder (safetensors)
      mode="bbti",                 # bbti: generative backdoor (Diff-Cleanse + Elijah) | entropy: a purifier's
      classifier=encoder_path,     #   DIFF2 backdoor (§5.7), judged with this classifier on config.data's test split
      **entropy_detector(ENTROPY_THRESHOLD_DIGITS),
      samplers=("ddpm", "ddim"),   # inversion samplers from ε + r: DDPM finds BadDiffusion-type, DDIM VillanDiffusion
      trojan_gammas=(),            # each γ: every sampler again with TrojDiff's backdoor sampling (x_T = γε + r, its
                                   #   reverse process; TrojDiff's γ: 0.6 blend, 0.1 patch): the paper's for TrojDiff
      num_steps=20,                # sampler steps from ε + r (differentiated through, remat per step)
      iterations=100, batch=100, lr=0.1,
      kappa=0.9,                   # MSCR similarity threshold (0.9 image targets; 0.75 for class targets)
      kappa_d=0.5,                 # backdoored when MSCR ≥ κ_d
      confirm_batch=64,            # ... and when fresh noise + r (this many samples) also reaches κ_d: r can fit
                                   #   the one noise batch it is optimised on (not in the paper; 0: Alg. 1's rule)
      restarts=5,                  # a run with only unconfirmed hits runs again from a new key (noise batch, start)
      patience=10,                 # ... and gives up after this many unconfirmed hits while a restart remains
      budget=300,                  # ... and all runs together stop after this many iterations (0: none)
      kappa_plus=8.5, kappa_minus=0.1, use_entropy=True,  # ℓ_e bounds (bits of the 8-bit histogram); Table 3
      min_entropy=0.1,             # MSCR leaves out samples of lower intensity entropy (bits): blank images are no
                                   #   target (not in the paper; a clean model under TrojDiff's sampling turns white)
      trigger_init="race",         # r at the start of BBTI: race (every r = c·1, c ∈ {−1, −0.5, 0, 0.5, 1}, runs
                                   #   race_iterations; then the lowest objective's goes on: finds BadDiffusion's −1
                                   #   shift and VillanDiffusion's sign in it) | offsets (the best c·1 at the start)
      race_iterations=5,           #   | zeros | normal (Alg. 1 line 3)
      encoder="classifier",        # classifier: penultimate features of encoder_path | pixels: mean-centred pixels
      encoder_path=encoder_path,   # | clip: CLIP's image embedding (the paper's ViT-B/32) from clip_weights
      clip_weights="",             # transformers CLIP model.safetensors, or OpenAI/open_clip safetensors / .pt
      evidence_samples=16,
      elijah=True, elijah_iterations=100, elijah_lambda=0.5,
      remove=False,                # Diff-Cleanse stage 2 on the inverted trigger; the repaired model → WORKDIR/repaired
      remove_ratio=0.03,           # share of each layer's channels pruned (⌊ratio·C⌋; the paper: 1–2 % of 128–512)
      prune_groups="layer",        # layer: each layer's channels alone | residual: a residual stream's writers together
      remove_loss="loss_p",        # loss_p (clean + unpruned teacher) | loss_c (clean only; Table 4's ablation)
                                   #   | unlearn (teacher + the inverted trigger's shift denoised away; not in the paper)
      taylor_threshold=0.95,       # 𝒯 / T: Taylor scores sum the gradients of t ≥ 𝒯 (950 of 1000)
      taylor_batch=16,
      finetune_data="synthetic",   # synthetic: samples of the model itself | real: config.data's train split
      finetune_samples=512,
      synthetic_sampler="ddpm",    # sampler (and steps) of those samples and of the scan's FID samples; a few-step
      synthetic_steps=100,         #   DDIM's samples are worse, and the repair learns them
      finetune_steps=300, finetune_batch=32, finetune_lr=2e-4,
      finetune_ema=0.999,          # the repaired model is the fine-tune's EMA (this decay, warm-up min(d, (1 + s)
                                   #   /(10 + s))); 0: its last iterate, whose FID varied 1.2–2.0 between seeds
      fid_classifier=encoder_path,  # FID features (penultimate layer) of the removal's before/after samples
      fid_samples=1024,            # at 192 a digits model's FID reads ~0.7 high and ±13 %: wider than a 25 % bar
      **terd_settings(),
      **input_detection_settings()))
  return c


TERD_KL_THRESHOLD_DIGITS = 0.1  # nats per dimension: the shipped clean DDPM reverses to 0.034, an unseen BadDiffusion
# model (stop sign 14 → hat) to 0.376 (docs/results.md, TERD); ~3× the clean one


def terd_settings():
  """TERD (``backdoor/terd.py``; scan.mode = "terd" and defend_zoo's TERD rows). The authors' CIFAR-10 run:
  3,000 + 1,000 iterations; the digits defaults are a tenth of that."""
  return dict(
      terd_iterations=300,         # trigger estimation: SGD on the reversed loss from x0 ~ N(0, I), t within 10 of T
      terd_refine_iterations=100,  # refinement: x0 generated from ε + r by terd_sampler (differentiated through)
      terd_batch=16, terd_lr=0.5, terd_weight_decay=5e-5,  # batch, SGD lr (cosine decay), λ of −λ‖r‖₁
      terd_sampler="ddim", terd_steps=10,  # the refinement's few-step sampler
      terd_clip_norm=0.01,         # the refinement's gradient clipping (global norm)
      terd_form="terd",            # forward form of the reversed loss: terd (b_t = 1) | baddiffusion | trojdiff
      terd_gamma=0.6,              #   γ of the trojdiff form (TrojDiff's noise scale: 0.6 blend, 0.1 patch)
      terd_kl_threshold=TERD_KL_THRESHOLD_DIGITS)  # backdoored when the reversed trigger's mean KL exceeds it


def input_detection_settings():
  """Input-level detectors (``backdoor/input_detection.py``): UFID and DisDet, and the filter's level."""
  return dict(
      ufid_copies=8, ufid_scale=0.5,  # UFID: generations from x_T and copies x_T + scale·ε (scan.num_steps steps of
                                      #   each model's sampler), scored by their mean pairwise cosine (scan.encoder)
      disdet_bins=64,                 # DisDet: histogram bins on [−4, 4] (plus the tails) of x_T's values
      input_fpr=0.05)                 # the level a calibrated threshold holds on clean noise (TPR at this FPR)


REMOVAL_KEYS = ("remove_ratio", "prune_groups", "remove_loss", "taylor_threshold", "taylor_batch", "finetune_data",
                "finetune_samples", "synthetic_sampler", "synthetic_steps", "finetune_steps", "finetune_batch",
                "finetune_lr", "finetune_ema")


SCAN_RULES = [
    model_folder("scan.model", "diffusion model (a jaxdiff export or a diffusers folder)", when=task_is("scan")),
    each("scan.samplers", lambda s: s in SAMPLERS, f"are in {SAMPLERS}"),
    each("scan.trojan_gammas", lambda g: _is_num(g) and 0 < g < 1, "are TrojDiff noise scales γ in (0, 1)",
         nonempty=False),
    integer("scan.num_steps", 1), integer("scan.iterations", 1), integer("scan.batch", 2),
    number("scan.lr", 0, lo_open=True), number("scan.kappa", -1, 1), number("scan.kappa_d", 0, 1),
    integer("scan.confirm_batch", 0), integer("scan.restarts", 0), integer("scan.patience", 0),
    integer("scan.budget", 0),
    Rule("scan.budget", lambda v, c: not v or v >= c.scan.iterations,
         "must be 0 (none) or at least scan.iterations (one full run)"),
    Rule("scan.restarts", lambda v, c: not v or c.scan.confirm_batch,
         "needs scan.confirm_batch > 0 (a restart follows a hit that fresh noise did not confirm); set restarts=0"),
    number("scan.kappa_plus", 0), number("scan.kappa_minus", 0), number("scan.min_entropy", 0, 8),
    one_of("scan.encoder", ("classifier", "pixels", "clip")),
    one_of("scan.trigger_init", ("zeros", "normal", "offsets", "race")), integer("scan.race_iterations", 1),
    one_of("scan.mode", ("bbti", "entropy", "terd")),
    integer("scan.terd_iterations", 1), integer("scan.terd_refine_iterations", 0), integer("scan.terd_batch", 1),
    number("scan.terd_lr", 0, lo_open=True), number("scan.terd_weight_decay", 0), one_of("scan.terd_sampler", SAMPLERS),
    integer("scan.terd_steps", 1), number("scan.terd_clip_norm", 0, lo_open=True),
    one_of("scan.terd_form", ("terd", "baddiffusion", "trojdiff")), number("scan.terd_kl_threshold", 0),
    number("scan.terd_gamma", 0, 1, lo_open=True),
    integer("scan.ufid_copies", 2), number("scan.ufid_scale", 0, lo_open=True), integer("scan.disdet_bins", 2),
    number("scan.input_fpr", 0, 1, lo_open=True, hi_open=True),
    model_folder("scan.classifier", "classifier export (f of the purifier + classifier pair)",
                 when=lambda c: c.task == "scan" and c.scan.mode == "entropy"),
    *entropy_rules("scan"),
    Rule("scan.clip_weights", lambda v, c: is_reference(v) and _file(v) or os.path.exists(resolve_path(v)),
         "must name CLIP weights (a transformers CLIP model.safetensors, or an OpenAI / open_clip ViT-B-32 "
         "safetensors or .pt; or an hf: / url: reference); set --config.scan.clip_weights=FILE",
         when=lambda c: c.task in ("scan", "defend_zoo") and c.scan.encoder == "clip"),
    model_folder("scan.encoder_path", "classifier export whose penultimate features embed the samples",
                 when=lambda c: c.task == "scan" and c.scan.encoder == "classifier"),
    integer("scan.evidence_samples", 2), integer("scan.elijah_iterations", 1), number("scan.elijah_lambda", 0),
    number("scan.remove_ratio", 0, 0.5), one_of("scan.remove_loss", REPAIR_LOSSES),
    one_of("scan.prune_groups", ("layer", "residual")),
    number("scan.taylor_threshold", 0, 1, hi_open=True), integer("scan.taylor_batch", 1),
    one_of("scan.finetune_data", ("synthetic", "real")), integer("scan.finetune_samples", 1),
    one_of("scan.synthetic_sampler", SAMPLERS), integer("scan.synthetic_steps", 1),
    integer("scan.finetune_steps", 0), integer("scan.finetune_batch", 1),
    number("scan.finetune_lr", 0, lo_open=True), number("scan.finetune_ema", 0, 1, hi_open=True),
    integer("scan.fid_samples", 2),
    model_folder("scan.fid_classifier", "classifier export whose penultimate features the removal's FID uses",
                 when=lambda c: c.task in ("scan", "defend_zoo") and (c.task != "scan" or c.scan.remove)),
]

RULES += SCAN_RULES

# ---------------------------------------------------------------- defend_zoo: every defence over a zoo


def add_defend(c, *, zoo_workdir=""):
  """defend_zoo defaults (with a ``zoo`` block naming the models and a ``scan`` block for BBTI/Elijah/removal)."""
  c.defend = ml_collections.ConfigDict(dict(
      zoo_workdir=zoo_workdir,     # workdir of the zoo task that exported models/<name>/
      models=(),                   # names to defend; () = every entry of config.zoo.models
      bbti_samplers="model",       # model: each model's zoo sampler (the paper's protocol; TrojDiff models with
                                   #   TrojDiff's sampling at their γ) | scan: scan.samplers × scan.trojan_gammas
      class_kappa=0.75,            # κ of MSCR for models with class targets (In-/Out-D2D) under "model" (the paper)
      remove=True,                 # run the removals on backdoored models (Tables 2 and 4)
      remove_models=(),            # which backdoored models to repair; () = all of them
      ablations=True,              # BBTI without ℓ_e (Table 3) and Diff-Cleanse with loss_c (Table 4)
      elijah_removal=True,         # Elijah's removal (fine-tune with its τ, no pruning) as a baseline row
      unlearn=True,                # Diff-Cleanse's pruning with the unlearn fine-tune (scan.remove_loss docs) as a row
      finetune_only=True,          # the control: Diff-Cleanse's fine-tune (loss_p) with nothing pruned, as a row
      ratios=(0.1,),               # both methods also at these ratios (besides scan.remove_ratio); Diff-Pruning: 7–13 %
      terd=True,                   # TERD's model-level verdict on every model (scan.terd_* settings)
      input_detection=True,        # input-level TERD / UFID / DisDet on every backdoored model (scan.ufid_*, ...)
      input_samples=64,            # trigger inputs and clean N(0, I) inputs per backdoored model
      fid_samples=1024,            # clean samples per FID of the removal rows (zoo.fid_samples: the zoo's own table)
      loose_mse_threshold=1e-2))   # the removal rows' second ASR (asr_loose_*): MSE to the target below this
  return c


DEFEND_RULES = [
    Rule("defend.zoo_workdir", lambda v, c: bool(v) and os.path.isdir(os.path.join(resolve_path(v), "models")),
         "must be the workdir of a zoo run of this config (it holds models/<name>/); run the zoo task first",
         when=task_is("defend_zoo")),
    Rule("defend.models", lambda v, c: isinstance(v, (tuple, list)) and all(n in c.zoo.models for n in v),
         "must list entries of config.zoo.models (or be empty for all of them)", when=task_is("defend_zoo")),
    one_of("defend.bbti_samplers", ("model", "scan")), number("defend.class_kappa", -1, 1),
    Rule("defend.remove_models", lambda v, c: isinstance(v, (tuple, list)) and all(n in c.zoo.models for n in v),
         "must list entries of config.zoo.models (or be empty for every backdoored one)", when=task_is("defend_zoo")),
    each("defend.ratios", lambda r: _is_num(r) and 0 <= r <= 0.5, "are ratios in [0, 0.5]",
         nonempty=False),
    integer("defend.fid_samples", 2), number("defend.loose_mse_threshold", 0, lo_open=True),
    integer("defend.input_samples", 2),
]

RULES += DEFEND_RULES
