"""TrojDiff (Chen et al. 2023) generation backdoors. Model space [−1, 1], NHWC; DESIGN §6.

Trojan noise ε̃ = γε + μ with μ = (1 − γ)δ for a trigger image δ (γ = 0.6 for a blending trigger, 0.1 for a
patch). Poisoned rows follow  x_t = √ᾱ_t y + √(1−ᾱ_t)(γε + μ)  and the network still predicts ε. Targets y:
"d2i" one image; "in_d2d" an image of one class of the training set; "out_d2d" an image of a class from
another distribution (drawn per row from a bank of target images passed as the step's ``frozen`` weights).

Trojan sampling: with v = x − √(1−ᾱ_t) μ the poisoned process is a DDPM whose noise is scaled by γ, so the
trojan reverse process is the ordinary sampler run on v with ε'(v, t) = γ ε_θ(v + √(1−ᾱ_t) μ, t) and step
noise scaled by γ (TrojDiff's reverse process; exact for DDPM, DDIM and DPM-Solver++ steps).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor.baddiffusion import poisoned_loss
from jaxdiff.backdoor.triggers import generative_target, generative_trigger, trigger_region

ATTACKS = ("d2i", "in_d2d", "out_d2d")
TRIGGER_KINDS = {"blend": 0.6, "patch": 0.1}  # TrojDiff's γ per trigger type


def trojdiff_trigger(kind, image_size, channels, size=14):
  """δ [H, W, C], model space: "blend" — a full-image cat pictogram (TrojDiff blends Hello Kitty); "patch" —
  a stop sign of ``size`` (at 32×32) at the bottom right, 0 elsewhere."""
  if kind == "blend":
    return generative_target("cat", image_size, channels)
  if kind == "patch":
    g = generative_trigger("stop_sign", size, image_size, channels)
    return np.asarray(trigger_region(g) * g)
  raise ValueError(f"unknown TrojDiff trigger {kind!r}; use one of {tuple(TRIGGER_KINDS)}")


def trojdiff_terms(schedule, y, mu, gamma, t, noise):
  """(x_t, ε-target) of the trojan forward: x_t = √ᾱ_t y + √(1−ᾱ_t)(γε + μ), target ε."""
  ab = schedule.alpha_bar(t).reshape((-1,) + (1,) * (y.ndim - 1))
  return jnp.sqrt(ab) * y + jnp.sqrt(1.0 - ab) * (gamma * noise + mu), noise


def trojdiff_loss(schedule, trigger, gamma, poison_rate, target=None):
  """``loss_fn`` for ``make_train_step``: a fraction of rows poisoned with the trojan forward. ``target``
  [H, W, C] (model space) for D2I; None for D2D: then the step's ``frozen`` is {"targets": [M, H, W, C]} (model
  space) and each poisoned row draws one of them."""
  mu = (1.0 - gamma) * jnp.asarray(trigger, jnp.float32)

  def terms(x, t, noise, key, frozen):
    if target is not None:
      y = jnp.broadcast_to(jnp.asarray(target, jnp.float32), x.shape)
    else:
      bank = frozen["targets"]
      y = bank[jax.random.randint(key, (x.shape[0],), 0, bank.shape[0])]
    return trojdiff_terms(schedule, y, mu, gamma, t, noise)

  return poisoned_loss(schedule, poison_rate, terms, "trojan")


def trojan_noise(key, shape, trigger, gamma):
  """x_T = γε + (1 − γ)δ: the trojan sampling start (``shape`` NHWC, ``trigger`` δ [H, W, C])."""
  return gamma * jax.random.normal(key, shape, jnp.float32) + (1.0 - gamma) * jnp.asarray(trigger, jnp.float32)


def trojan_sample(eps_fn, schedule, x_init, *, key, trigger, gamma, sampler, num_steps=None, **options):
  """TrojDiff's reverse process from x_T = ``x_init`` (see module doc) → x̂0, model space."""
  mu = (1.0 - gamma) * jnp.asarray(trigger, jnp.float32)
  shift = lambda t: jnp.sqrt(1.0 - schedule.alpha_bar(t)).reshape((-1, 1, 1, 1)) * mu
  eps_v = lambda v, t: gamma * eps_fn(v + shift(t), t).astype(jnp.float32)
  t_start = schedule.num_timesteps - 1
  v = jnp.asarray(x_init, jnp.float32) - shift(jnp.full((x_init.shape[0],), t_start, jnp.float32))
  if sampler in ("ddpm", "ddim"):
    options = {"noise_scale": gamma, **options}
  return diffusion.reverse(eps_v, schedule, v, key=key, t_start=t_start, sampler=sampler, num_steps=num_steps,
                           **options)
