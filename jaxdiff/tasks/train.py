"""Tasks ``train_ddpm`` and ``train_classifier``: the same runner (``jaxdiff.train.fit``), different losses."""
from __future__ import annotations

import os

import jax
import numpy as np

from jaxdiff.attacks import adversarial_loss
from jaxdiff.convert import export_model
from jaxdiff.data import eval_batches, make_source
from jaxdiff.io import MetricWriter
from jaxdiff.models import eps_apply
from jaxdiff.parallel import make_mesh
from jaxdiff.report import save_grid
from jaxdiff.tasks.common import fingerprint, init_or_load, make_sampler_fn, schedule_from_config
from jaxdiff.tasks.config import validate
from jaxdiff.train import augmented, classifier_loss, diffusion_loss, fit


def _check_data_shape(src, mcfg):
  want = (mcfg.image_size, mcfg.image_size, mcfg.in_channels)
  if tuple(src.shape) != want:
    raise ValueError(f"dataset images have shape {tuple(src.shape)} but the model expects {want}; "
                     "set config.data.image_size / config.model.in_channels to match")


def _setup(config):
  """(train source, model, initial or loaded variables) of a training config; shapes checked."""
  src = make_source(config.data, "train")
  _check_data_shape(src, config.model)
  model, variables, _ = init_or_load(config.model, jax.random.key(config.seed))
  return src, model, variables


def _fit(config, workdir, src, model, variables, loss_fn, desc, **kw):
  state, _ = fit(model, variables, loss_fn, src, config=config, workdir=workdir, mesh=make_mesh(),
                 fingerprint=fingerprint(config, "model", "optim.name", "train.batch_size"), desc=desc, **kw)
  return state


def train_ddpm(config, workdir):
  validate(config)
  schedule = schedule_from_config(config.diffusion)
  mc, n = config.model, config.train.num_samples
  src, model, variables = _setup(config)
  sampler = make_sampler_fn(model, schedule, (n, mc.image_size, mc.image_size, mc.in_channels),
                            config.train.sample_sampler, config.train.sample_steps)

  def write_samples(st):
    imgs = np.asarray(sampler(st.ema_params, jax.random.key(config.seed + 1)))
    save_grid(imgs, os.path.join(workdir, "samples", f"step_{int(st.step):07d}.png"),
              ncol=int(np.ceil(np.sqrt(n))), scale=config.train.grid_scale)

  def export(st):
    export_model(os.path.join(workdir, "export"), "unet", mc, {"params": st.ema_params},
                 {"diffusion": config.diffusion.to_dict(), "steps": int(st.step)})

  return _fit(config, workdir, src, model, variables, diffusion_loss(schedule), "train_ddpm",
              callbacks=[(config.train.sample_every, write_samples)], export=export, apply_fn=eps_apply(model))


def evaluate_classifier(model, variables, source, batch_size=500):
  """Top-1 accuracy of a classifier on a source (eval mode)."""
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  correct = n = 0
  for _, x, y in eval_batches(source, batch_size):
    correct += int(np.sum(np.argmax(np.asarray(apply(variables, x)), -1) == y))
    n += len(y)
  return correct / max(n, 1)


def train_classifier(config, workdir):
  validate(config)
  loss = classifier_loss(config.train.label_smoothing)
  adv = config.train.adversarial
  if adv.enabled:
    loss = adversarial_loss(loss, eps=adv.eps, step_size=adv.step_size, steps=adv.steps)
  loss = augmented(loss, config.train.augment)  # outermost: PGD attacks the augmented image
  src, model, variables = _setup(config)
  test = make_source(config.data, "test")
  evals = []

  def evaluate(st):
    evals.append(evaluate_classifier(model, {"params": st.params, **st.model_state}, test))
    MetricWriter(workdir).write(int(st.step), {"test_accuracy": evals[-1]})

  def export(st):
    export_model(os.path.join(workdir, "export"), "classifier", config.model, {"params": st.params, **st.model_state},
                 {"test_accuracy": evals[-1] if evals else None, "steps": int(st.step), "data": config.data.to_dict(),
                  "adversarial_training": adv.to_dict() if adv.enabled else None})

  return _fit(config, workdir, src, model, variables, loss, "train_classifier", model_state_keys=("batch_stats",),
              callbacks=[(config.train.eval_every, evaluate)], export=export)
