"""What the zoo-based tasks share (zoo, defend_zoo): the zoo's specs as backdoors, sampling clean and triggered
images, and the judge of ASR and FID; model space [−1, 1] inside, pixel [0, 1] where images leave."""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.backdoor.generative import make_backdoor
from jaxdiff.convert import export_model, load_model, model_digest
from jaxdiff.data import make_source, ring_images
from jaxdiff.errors import ConfigError
from jaxdiff.fingerprints import canonical
from jaxdiff.metrics import fid, mse_attack_success_rate, mse_per_sample
from jaxdiff.models import build_model, eps_fn_of, init_variables
from jaxdiff.parallel import make_mesh
from jaxdiff.tasks.common import fid_feature_fn, fingerprint, load_classifier
from jaxdiff.train import classifier_loss, fit


def specs(config):
  """[(name, spec)] in a fixed order: clean models first, then backdoored ones, each by name."""
  items = sorted(config.zoo.models.items(), key=lambda kv: (kv[1].attack != "clean", kv[0]))
  return [(name, spec) for name, spec in items]


def backdoor_of(config, spec):
  """The ``GenerativeBackdoor`` of a spec, None for a clean model."""
  if spec.attack == "clean":
    return None
  return make_backdoor(spec.attack, config.data.image_size, config.model.in_channels, trigger=spec.trigger,
                       trigger_size=spec.trigger_size, target=spec.target, target_class=spec.target_class,
                       poison_rate=spec.poison_rate, psi=spec.psi, trojan_trigger=spec.trojan_trigger)


def target_bank(config, spec):
  """Model-space target images of a D2D attack: the training images of ``target_class`` (In-D2D), or an
  out-of-distribution class (Out-D2D): rings for 1-channel data, the digits (upscaled, grey) otherwise."""
  size, ch = config.data.image_size, config.model.in_channels
  if spec.attack == "trojdiff_in_d2d":
    src = make_source(config.data, "train")
    x, y = src.get(np.arange(len(src)))
    x = x[y == spec.target_class]
  elif ch == 1:
    x = ring_images(1024, size, seed=0)
  else:
    from jaxdiff.data import digits_source
    x = np.repeat(digits_source("train", size).images, ch, -1)
  return jnp.asarray(2.0 * x - 1.0, jnp.float32)


def out_classifier(config, workdir, train=True):
  """(module, variables, fingerprint) of the classifier that scores Out-D2D: ``zoo.out_classifier``, or trained
  here on digits plus rings (label 10) plus junk images (label 11, a reject class) into WORKDIR/classifiers/
  (``train=False``: only reused from there — a reader of another task's workdir never writes into it)."""
  z = config.zoo
  if z.out_classifier:
    return (*load_classifier(z.out_classifier, "config.zoo.out_classifier"),
            {"models": {"out_classifier": model_digest(z.out_classifier)}})
  out = os.path.join(workdir, "classifiers", "out_d2d")
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.update(name="digits_rings" if config.data.name == "digits" else config.data.name, num_classes=12)
  c.model = ml_collections.ConfigDict(dict(name="cnn", image_size=config.data.image_size,
                                           in_channels=config.model.in_channels, num_classes=12, widths=(32, 64),
                                           dtype="float32", init_from=""))
  c.optim.update(name="adam", lr=3e-3, warmup_steps=50, decay="cosine", grad_clip=0.0, weight_decay=0.0)
  c.train.update(num_steps=z.out_classifier_steps, batch_size=128, use_ema=False, checkpoint_every=1000)
  fp = canonical(fingerprint(c, "data", "model", "optim", "train.num_steps"))
  if os.path.exists(os.path.join(out, "meta.json")):
    model, variables, meta = load_model(out, kind="classifier")
    if meta.get("fingerprint") == fp:
      return model, variables, fp
  if not train:
    raise ConfigError(f"{out} holds no Out-D2D classifier trained with these settings: run the zoo task with this "
                      "config into that workdir first, or set config.zoo.out_classifier")
  if c.data.name != "digits_rings":
    raise ValueError("config.zoo.out_classifier must name a classifier of the data plus the Out-D2D class "
                     f"(label 10) for data {config.data.name!r}; one is trained here for digits only")
  model = build_model(c.model)
  variables = init_variables(model, c.model, jax.random.key(c.seed))
  state, _ = fit(model, variables, classifier_loss(0.0), make_source(c.data, "train"), config=c,
                 workdir=os.path.join(workdir, "classifiers", "out_d2d_run"), mesh=make_mesh(), fingerprint=fp,
                 model_state_keys=("batch_stats",), desc="Out-D2D classifier")
  variables = {"params": state.params, **state.model_state}
  export_model(out, "classifier", c.model, variables, {"fingerprint": fp, "data": c.data.to_dict()})
  return model, variables, fp


@functools.lru_cache(maxsize=32)
def _sampler(model, schedule_name, num_timesteps, sampler, steps, gamma):
  """Jitted ``(params, x_T, key, trigger) -> images`` (pixel [0, 1]); ``gamma`` set: TrojDiff's reverse
  process with trigger δ, else the plain sampler. Weights and triggers are arguments."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  @jax.jit
  def run(params, x_init, key, trigger):
    eps = eps_fn_of(model, params)
    if gamma is None:
      x = diffusion.sample(eps, schedule, key=key, sampler=sampler, num_steps=steps or None, x_init=x_init)
    else:
      x = tj.trojan_sample(eps, schedule, x_init, key=key, trigger=trigger, gamma=gamma, sampler=sampler,
                           num_steps=steps or None)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return run


def generate(config, model, params, key, n, sampler, backdoor=None):
  """n samples (pixel [0, 1]) from clean noise, or through ``backdoor``'s start and reverse process."""
  z, d = config.zoo, config.diffusion
  shape = (config.data.image_size, config.data.image_size, config.model.in_channels)
  gamma = backdoor.gamma if backdoor is not None and backdoor.trojan else None
  run = _sampler(model, d.schedule, d.num_timesteps, sampler, int(z.sample_steps[sampler]), gamma)
  trigger = jnp.zeros(shape) if backdoor is None else jnp.asarray(backdoor.trigger)
  out = []
  for i in range(0, n, z.sample_batch):
    k = jax.random.fold_in(key, i)
    m = min(z.sample_batch, n - i)
    k_init = jax.random.fold_in(k, 1)
    x_init = jax.random.normal(k_init, (m,) + shape) if backdoor is None else backdoor.start(k_init, (m,) + shape)
    out.append(np.asarray(run(params, x_init, k, trigger)))
  return np.concatenate(out)


class Judge:
  """ASR of triggered samples for each attack: MSE to the target image below ``zoo.mse_threshold``, or the
  share a classifier puts in the target class (In-D2D: ``zoo.class_classifier``; Out-D2D: the Out-D2D
  classifier's extra class); and the FID features."""

  def __init__(self, config, workdir, need_out, train_out=True):
    z = config.zoo
    self.threshold = z.mse_threshold
    self._cls = load_classifier(z.class_classifier, "config.zoo.class_classifier") if z.class_classifier else None
    self._out, self.out_fingerprint = None, None
    if need_out:
      module, variables, self.out_fingerprint = out_classifier(config, workdir, train_out)
      self._out = (module, variables)
    self.features, self.feature_name = fid_feature_fn(z.fid_features, z.fid_classifier, z.inception_weights,
                                                      "config.zoo")
    src = make_source(config.data, z.fid_reference_split)
    self.reference = self.features(src.get(np.arange(len(src)))[0])

  @staticmethod
  def _predict(clf, x):
    module, variables = clf
    return np.asarray(jnp.argmax(module.apply(variables, jnp.asarray(x), train=False), -1))

  def target_share(self, backdoor, images):
    """Fraction of ``images`` in the target class of a D2D backdoor."""
    if backdoor.attack == "trojdiff_in_d2d":
      return float(np.mean(self._predict(self._cls, images) == backdoor.target_class))
    return float(np.mean(self._predict(self._out, images) == 10))

  def asr(self, backdoor, images, threshold=None):
    """The share of triggered ``images`` (pixel) that hit the backdoor's target: MSE below ``threshold`` (default
    ``zoo.mse_threshold``) for an image target, the target class for a class target (``threshold`` unused)."""
    if backdoor.target is not None:
      return mse_attack_success_rate(mse_per_sample(images, (backdoor.target + 1) / 2),
                                     self.threshold if threshold is None else threshold)
    return self.target_share(backdoor, images)

  @staticmethod
  def target_mse(backdoor, images):
    """Median MSE (pixel [0, 1]) of triggered ``images`` to an image target; None for class targets. Beside the
    ASR's hard threshold it tells a backdoor that is gone (bd_box_corner pruned 6 % per layer: 0.02–0.14) from one
    whose target only came out blurred (pruned 3 %: 8.6e-4, just above the 1e-3 threshold)."""
    if backdoor.target is None:
      return None
    return float(np.median(mse_per_sample(images, (backdoor.target + 1) / 2)))

  def fid(self, images):
    return fid(self.features(images), self.reference)
