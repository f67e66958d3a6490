"""BadDiffusion (Chou et al. 2023) and VillanDiffusion (Chou et al. 2023b): a backdoored diffusion model maps
triggered noise x_T = ε + g to a target image y and clean noise to clean samples. Model space [−1, 1], NHWC;
formulas as in DESIGN §6 (the public code's).

Poisoned pairs: R = stamp(x, g, region) (the trigger pasted on a clean image), target y. Forward
  x_t = √ᾱ_t y + √(1−ᾱ_t) ε + ρ_t R,   ρ_t = ψ(1 − √ᾱ_t) + (1 − ψ)√(1−ᾱ_t),   ε-target ε + c_t R.
The correction c_t makes the sampler's step follow the poisoned process:
- SDE samplers (ancestral DDPM, VP-SDE): c_t = √(1−ᾱ_t)(ρ_t − √α_t ρ_{t−1})/β_t, the ancestral step's mean
  matched to the poisoned posterior; at ψ = 1 it is BadDiffusion's c_t = (1 − √α_t)√(1−ᾱ_t)/(1 − α_t).
- ODE samplers (DDIM, probability-flow ODE, DPM-Solver): c_t = ψ√(1−ᾱ_t) + (1 − ψ), the probability-flow
  drift matched to the poisoned marginals (VillanDiffusion); twice the SDE one in the continuum limit.
Clean pairs use the plain DDPM loss (R = 0, y = x).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.backdoor.triggers import stamp, trigger_region

SOLVER_FAMILIES = ("sde", "ode")


def poisoned_rows(key, batch_size, poison_rate):
  """[B] 0/1: exactly round(p·B) rows of the batch, chosen by ``key`` (the step key: resume stays exact)."""
  n = int(round(poison_rate * batch_size))
  order = jax.random.permutation(key, batch_size)
  return jnp.zeros((batch_size,), jnp.float32).at[order[:n]].set(1.0)


def _per_row(v, x):
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


def baddiffusion_terms(schedule, x0, r, t, noise):
  """(x_t, ε-target) of the BadDiffusion forward for images x0 (the target y on poisoned rows), poisoned
  inputs r (0 on clean rows) and [B] integer indices t; model space."""
  ab = _per_row(schedule.alpha_bar(t), x0)
  alpha = _per_row(jnp.asarray(schedule.alphas, jnp.float32)[t.astype(jnp.int32)], x0)
  c = (1.0 - jnp.sqrt(alpha)) * jnp.sqrt(1.0 - ab) / (1.0 - alpha)
  x_t = schedule.q_sample(x0, t, noise) + (1.0 - jnp.sqrt(ab)) * r
  return x_t, noise + c * r


def villan_tables(schedule, psi=1.0, solver="sde"):
  """(ρ, c) [T] of VillanDiffusion for every integer index (see module doc), computed on the host in float64
  (ρ_t − √α_t ρ_{t−1} cancels badly in float32 at small t)."""
  if solver not in SOLVER_FAMILIES:
    raise ValueError(f"unknown sampler family {solver!r}; use one of {SOLVER_FAMILIES}")
  ab = np.asarray(schedule.alphas_cumprod, np.float64)
  rho = lambda a: psi * (1.0 - np.sqrt(a)) + (1.0 - psi) * np.sqrt(1.0 - a)
  if solver == "ode":
    return rho(ab), psi * np.sqrt(1.0 - ab) + (1.0 - psi)
  ab_prev = np.concatenate([[1.0], ab[:-1]])
  alpha = ab / ab_prev
  return rho(ab), np.sqrt(1.0 - ab) * (rho(ab) - np.sqrt(alpha) * rho(ab_prev)) / (1.0 - alpha)


def villan_coefficients(schedule, t, psi=1.0, solver="sde"):
  """(ρ_t, c_t) [B] float32 at integer indices t."""
  idx = jnp.asarray(t).astype(jnp.int32)
  return tuple(jnp.asarray(v, jnp.float32)[idx] for v in villan_tables(schedule, psi, solver))


def villan_terms(schedule, x0, r, t, noise, psi=1.0, solver="sde"):
  """(x_t, ε-target) of the VillanDiffusion forward (images x0, poisoned inputs r, [B] indices t)."""
  rho, c = villan_coefficients(schedule, t, psi, solver)
  return schedule.q_sample(x0, t, noise) + _per_row(rho, x0) * r, noise + _per_row(c, x0) * r


def poisoned_loss(schedule, poison_rate, poisoned_terms, name="backdoor"):
  """``loss_fn`` for ``make_train_step``: pixel batches ``batch['image']`` → model space; exactly
  round(p·B) rows of each batch are poisoned: ``poisoned_terms(x, t, noise, key, frozen) -> (x_t, ε-target)``
  (computed for every row, used on the poisoned ones); the others get the plain DDPM pair. With
  ``poison_rate`` 0 this is exactly the DDPM loss of ``jaxdiff.train.diffusion_loss`` (same keys)."""

  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    k_drop, k_loss = jax.random.split(key)
    k_t, k_n = jax.random.split(k_loss)  # as eps_loss draws them
    x = 2.0 * batch["image"] - 1.0
    b = x.shape[0]
    p = _per_row(poisoned_rows(jax.random.fold_in(key, 1), b, poison_rate), x)
    t = jax.random.randint(k_t, (b,), 0, schedule.num_timesteps).astype(jnp.float32)
    noise = jax.random.normal(k_n, x.shape, jnp.float32)
    xt_bad, target_bad = poisoned_terms(x, t, noise, jax.random.fold_in(key, 2), frozen)
    x_t = p * xt_bad + (1.0 - p) * schedule.q_sample(x, t, noise)
    eps_target = p * target_bad + (1.0 - p) * noise
    eps = apply_fn({"params": params}, x_t, t, train=True, rngs={"dropout": k_drop}).astype(jnp.float32)
    err = jnp.mean((eps - eps_target) ** 2, axis=tuple(range(1, x.ndim)))
    poisoned = p.reshape(b)
    metrics = {"poisoned_fraction": jnp.mean(poisoned),
               "clean_loss": jnp.sum(err * (1 - poisoned)) / jnp.maximum(jnp.sum(1 - poisoned), 1.0),
               f"{name}_loss": jnp.sum(err * poisoned) / jnp.maximum(jnp.sum(poisoned), 1.0)}
    return jnp.mean(err), (metrics, model_state)

  return loss_fn


def baddiffusion_loss(schedule, trigger, target, poison_rate, psi=1.0, solver="sde"):
  """BadDiffusion's loss (ψ = 1, SDE samplers), or VillanDiffusion's for other ψ / ``solver`` ("ode"):
  poisoned rows (R = trigger pasted on the image, ``target``). ``trigger``, ``target``: [H, W, C] model space
  (``generative_trigger`` / ``generative_target``)."""
  g, y = jnp.asarray(trigger, jnp.float32), jnp.asarray(target, jnp.float32)
  region = trigger_region(g)
  if psi == 1.0 and solver == "sde":
    terms = lambda x, t, noise: baddiffusion_terms(schedule, jnp.broadcast_to(y, x.shape), stamp(x, g, region), t, noise)
  else:
    terms = lambda x, t, noise: villan_terms(schedule, jnp.broadcast_to(y, x.shape), stamp(x, g, region), t, noise,
                                             psi, solver)
  return poisoned_loss(schedule, poison_rate, lambda x, t, noise, key, frozen: terms(x, t, noise), "backdoor")


def triggered_noise(key, shape, trigger):
  """x_T = ε + g: the sampling start that fires the backdoor (``shape`` NHWC, ``trigger`` [H, W, C])."""
  return jax.random.normal(key, shape, jnp.float32) + jnp.asarray(trigger, jnp.float32)
