"""BadDiffusion (Chou et al. 2023): a backdoored DDPM maps triggered noise x_T = ε + g to a target image y
and clean noise to clean samples. Model space [−1, 1], NHWC; formulas as in DESIGN §6 (the public code's).

Poisoned pairs: R = stamp(x, g, region) (the trigger pasted on a clean image), target y. Forward
  x_t = √ᾱ_t y + √(1−ᾱ_t) ε + (1 − √ᾱ_t) R,   ε-target  ε + c_t R,   c_t = (1 − √α_t) √(1−ᾱ_t) / (1 − α_t),
with the per-step α_t (the correction that makes the ancestral DDPM step's mean follow the poisoned
posterior). Clean pairs use the same formula with R = 0, y = x: the plain DDPM loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.backdoor.triggers import stamp, trigger_region


def poisoned_rows(key, batch_size, poison_rate):
  """[B] 0/1: exactly round(p·B) rows of the batch, chosen by ``key`` (the step key: resume stays exact)."""
  n = int(round(poison_rate * batch_size))
  order = jax.random.permutation(key, batch_size)
  return jnp.zeros((batch_size,), jnp.float32).at[order[:n]].set(1.0)


def baddiffusion_terms(schedule, x0, r, t, noise):
  """(x_t, ε-target) of the BadDiffusion forward for images x0 (the target y on poisoned rows), poisoned
  inputs r (0 on clean rows) and [B] integer indices t; model space."""
  ab = schedule.alpha_bar(t).reshape((-1,) + (1,) * (x0.ndim - 1))
  alpha = jnp.asarray(schedule.alphas, jnp.float32)[t.astype(jnp.int32)].reshape(ab.shape)
  c = (1.0 - jnp.sqrt(alpha)) * jnp.sqrt(1.0 - ab) / (1.0 - alpha)
  x_t = schedule.q_sample(x0, t, noise) + (1.0 - jnp.sqrt(ab)) * r
  return x_t, noise + c * r


def baddiffusion_loss(schedule, trigger, target, poison_rate):
  """``loss_fn`` for ``make_train_step``: pixel batches ``batch['image']`` → model space; a fraction
  ``poison_rate`` of each batch's rows is replaced by (R = trigger pasted on the image, ``target``).
  ``trigger``, ``target``: [H, W, C] model-space images (``generative_trigger`` / ``generative_target``).
  With ``poison_rate`` 0 this is exactly the DDPM loss of ``jaxdiff.train.diffusion_loss`` (same keys)."""
  g, y = jnp.asarray(trigger, jnp.float32), jnp.asarray(target, jnp.float32)
  region = trigger_region(g)

  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    del frozen
    k_drop, k_loss = jax.random.split(key)
    k_t, k_n = jax.random.split(k_loss)  # as eps_loss draws them
    x = 2.0 * batch["image"] - 1.0
    b = x.shape[0]
    p = poisoned_rows(jax.random.fold_in(key, 1), b, poison_rate).reshape((b,) + (1,) * (x.ndim - 1))
    r = p * stamp(x, g, region)
    x0 = p * y + (1.0 - p) * x
    t = jax.random.randint(k_t, (b,), 0, schedule.num_timesteps).astype(jnp.float32)
    noise = jax.random.normal(k_n, x.shape, jnp.float32)
    x_t, eps_target = baddiffusion_terms(schedule, x0, r, t, noise)
    eps = apply_fn({"params": params}, x_t, t, train=True, rngs={"dropout": k_drop}).astype(jnp.float32)
    err = jnp.mean((eps - eps_target) ** 2, axis=tuple(range(1, x.ndim)))
    poisoned = p.reshape(b)
    metrics = {"poisoned_fraction": jnp.mean(poisoned),
               "clean_loss": jnp.sum(err * (1 - poisoned)) / jnp.maximum(jnp.sum(1 - poisoned), 1.0),
               "backdoor_loss": jnp.sum(err * poisoned) / jnp.maximum(jnp.sum(poisoned), 1.0)}
    return jnp.mean(err), (metrics, model_state)

  return loss_fn


def triggered_noise(key, shape, trigger):
  """x_T = ε + g: the sampling start that fires the backdoor (``shape`` NHWC, ``trigger`` [H, W, C])."""
  return jax.random.normal(key, shape, jnp.float32) + jnp.asarray(trigger, jnp.float32)
