"""Tasks ``train_ddpm`` and ``train_classifier``: the same loop and train step, different losses."""
from __future__ import annotations

import os

import jax
import numpy as np

from jaxdiff.data import make_source
from jaxdiff.parallel import check_divisible, make_mesh
from jaxdiff.report import save_grid
from jaxdiff.tasks.common import (export_model, fingerprint, init_or_load, make_sampler_fn,
                                  schedule_from_config)
from jaxdiff.train import (Checkpointer, classifier_loss, create_state, diffusion_loss, make_optimizer,
                           make_train_step, train_loop)


def _check_data_shape(src, mcfg):
  want = (mcfg.image_size, mcfg.image_size, mcfg.in_channels)
  if tuple(src.shape) != want:
    raise ValueError(f"dataset images have shape {tuple(src.shape)} but the model expects {want}; "
                     "set config.data.image_size / config.model.in_channels to match")


def _setup(config, workdir, loss_fn, model_state_keys=()):
  mesh = make_mesh()
  check_divisible(config.train.batch_size, mesh)
  src = make_source(config.data, "train")
  _check_data_shape(src, config.model)
  model, variables = init_or_load(config.model, jax.random.key(config.seed), config.model.get("init_from"))
  optimizer = make_optimizer(config.optim, config.train.num_steps)
  model_state = {k: variables[k] for k in model_state_keys if k in variables}
  state = create_state(variables["params"], optimizer, config.seed, model_state)
  step = make_train_step(model.apply, loss_fn, optimizer, mesh=mesh, ema_decay=config.train.ema_decay)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                      fingerprint=fingerprint(config, "model", "optim.name", "train.batch_size"),
                      max_to_keep=config.train.keep_checkpoints, save_every=config.train.checkpoint_every)
  return mesh, src, model, state, step, ckpt


def train_ddpm(config, workdir):
  schedule = schedule_from_config(config.diffusion)
  mesh, src, model, state, step, ckpt = _setup(config, workdir, diffusion_loss(schedule))
  mc = config.model
  n = config.train.num_samples
  sampler = make_sampler_fn(model, schedule, (n, mc.image_size, mc.image_size, mc.in_channels),
                            config.train.sample_sampler, config.train.sample_steps)

  def write_samples(st):
    imgs = np.asarray(sampler(st.ema_params, jax.random.key(config.seed + 1)))
    save_grid(imgs, os.path.join(workdir, "samples", f"step_{int(st.step):07d}.png"),
              ncol=int(np.ceil(np.sqrt(n))), scale=config.train.get("grid_scale", 1))

  state = train_loop(state, step, src, mesh=mesh, workdir=workdir, num_steps=config.train.num_steps,
                     global_batch=config.train.batch_size, seed=config.seed, checkpointer=ckpt,
                     log_every=config.train.log_every, callbacks=[(config.train.sample_every, write_samples)],
                     stop_at=config.train.get("stop_at") or None, desc="train_ddpm")
  ckpt.close()
  if int(state.step) == config.train.num_steps:
    export_model(os.path.join(workdir, "export"), "unet", mc, {"params": state.ema_params},
                 {"diffusion": config.diffusion.to_dict(), "steps": int(state.step)})
  return state


def evaluate_classifier(model, variables, source, batch_size=500):
  """Top-1 accuracy of a classifier on a source (eval mode)."""
  from jaxdiff.data import eval_batches
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  correct = n = 0
  for _, x, y in eval_batches(source, batch_size):
    correct += int(np.sum(np.argmax(np.asarray(apply(variables, x)), -1) == y))
    n += len(y)
  return correct / max(n, 1)


def train_classifier(config, workdir):
  loss = classifier_loss(config.train.get("label_smoothing", 0.0))
  adv = config.train.get("adversarial")
  if adv and adv.get("enabled"):
    from jaxdiff.attacks.training import adversarial_loss
    loss = adversarial_loss(loss, eps=adv.eps, step_size=adv.step_size, steps=adv.steps)
  mesh, src, model, state, step, ckpt = _setup(config, workdir, loss, ("batch_stats",))
  writer_evals = []

  def evaluate(st):
    acc = evaluate_classifier(model, {"params": st.params, **st.model_state}, make_source(config.data, "test"))
    writer_evals.append(acc)
    from jaxdiff.io import MetricWriter
    MetricWriter(workdir).write(int(st.step), {"test_accuracy": acc})

  state = train_loop(state, step, src, mesh=mesh, workdir=workdir, num_steps=config.train.num_steps,
                     global_batch=config.train.batch_size, seed=config.seed, checkpointer=ckpt,
                     log_every=config.train.log_every, callbacks=[(config.train.eval_every, evaluate)],
                     stop_at=config.train.get("stop_at") or None, desc="train_classifier")
  ckpt.close()
  if int(state.step) == config.train.num_steps:
    export_model(os.path.join(workdir, "export"), "classifier", config.model,
                 {"params": state.params, **state.model_state},
                 {"test_accuracy": writer_evals[-1] if writer_evals else None, "steps": int(state.step),
                  "data": config.data.to_dict()})
  return state
