"""The one train step: model apply function and loss are arguments; data-parallel via shardings.

The batch is sharded over the mesh's 'data' axis and the state replicated; ``jit`` (GSPMD) turns the
batch-mean loss into per-device partial sums plus an all-reduce, so the gradients are averaged across
every device and host with the same code for 1 and N devices.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxdiff.data.augment import random_crop_flip
from jaxdiff.parallel import batch_sharded, replicated
from jaxdiff.train.state import TrainState, ema_update


def make_train_step(apply_fn, loss_fn, optimizer, *, mesh, ema_decay=0.9999, donate=True):
  """Returns jitted ``step(state, batch, frozen) -> (state, metrics)`` (``frozen`` may be None).

  ``loss_fn(apply_fn, params, model_state, batch, key, frozen) -> (loss, (metrics, new_model_state))``: a
  scalar batch-mean loss; ``metrics`` a dict of scalars; ``new_model_state`` e.g. BatchNorm stats.
  ``frozen``: weights the loss reads but does not train (surrogate classifiers, a teacher model), passed
  as an argument (replicated), never captured as constants.
  """
  def step(state: TrainState, batch, frozen):
    grad_fn = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(apply_fn, state.params, state.model_state, batch,
                                                    state.step_key(), frozen)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state,
                        ema_params=ema_update(state.ema_params, params, state.step, ema_decay))
    return new, {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}

  rep, data = replicated(mesh), batch_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                 donate_argnums=(0,) if donate else ())


def diffusion_loss(schedule, t_max=None):
  """DDPM ε-loss on ``batch['image']`` (pixel [0, 1] → model space), dropout on."""
  from jaxdiff.diffusion import eps_loss

  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    del frozen
    k_drop, k_loss = jax.random.split(key)
    eps_fn = lambda x, t: apply_fn({"params": params}, x, t, train=True, rngs={"dropout": k_drop})
    loss = eps_loss(eps_fn, schedule, 2.0 * batch["image"] - 1.0, k_loss, t_max=t_max)
    return loss, ({}, model_state)
  return loss_fn


def augmented(loss_fn, augment):
  """``loss_fn`` on an augmented batch: "" (none) | "crop_flip" (``data.random_crop_flip``: 4-pixel padded random
  crop and horizontal flip, on device, inside the jitted step). Outermost, so that adversarial training attacks the
  augmented image (Madry et al.'s order)."""
  if augment not in ("", "crop_flip"):
    raise ValueError(f"unknown augmentation {augment!r}; use '' or 'crop_flip'")
  if not augment:
    return loss_fn

  def wrapped(apply_fn, params, model_state, batch, key, frozen=None):
    key, k_aug = jax.random.split(key)
    return loss_fn(apply_fn, params, model_state, {**batch, "image": random_crop_flip(batch["image"], k_aug)}, key,
                   frozen)
  return wrapped


def classifier_loss(label_smoothing=0.0, augment=""):
  """Cross-entropy of a classifier on pixel-space images; BatchNorm stats in ``model_state``; ``augment`` as in
  ``augmented``."""
  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    del frozen
    variables = {"params": params, **model_state}
    mutable = list(model_state.keys())
    out = apply_fn(variables, batch["image"], train=True, rngs={"dropout": key}, mutable=mutable)
    logits, new_state = out if mutable else (out, {})
    n = logits.shape[-1]
    onehot = optax.smooth_labels(jax.nn.one_hot(batch["label"], n), label_smoothing)
    loss = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, ({"accuracy": acc}, dict(new_state))
  return augmented(loss_fn, augment)
