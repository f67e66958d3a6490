"""TERD (Mo et al., ICML 2024): a backdoored diffusion model's trigger reversed by a loss that does not need the
target, model detection by the KL divergence of the reversed input distribution from N(0, I), and input detection
by likelihood. Model space [−1, 1] for triggers and noise; NHWC.

Unified backdoor forward process (TERD §4.1), a poisoned x_t = a_t x0 + b_t r + c_t ε with::

  BadDiffusion / VillanDiffusion  a = √ᾱ_t, b = 1 − √ᾱ_t, c = √(1 − ᾱ_t)      (form "baddiffusion")
  TrojDiff (r = μ)                a = √ᾱ_t, b = 1 − √ᾱ_t, c = γ √(1 − ᾱ_t)    (form "trojdiff")
  the authors' code               a = √ᾱ_t, b = 1,        c = √(1 − ᾱ_t)      (form "terd"; b_T ≈ 1 anyway)

Reversed loss (TERD Eq. 9): two noisings of one x0 with independent ε_1, ε_2; the unknown target's term cancels in
the difference::

  L(r) = ½ E ‖(ε_1 − ε_θ(x_t^1, t)) − (ε_2 − ε_θ(x_t^2, t))‖²   (sum over pixels, mean over the batch)

Two stages (TERD §4.2): estimation — x0 ~ N(0, I), t near T, SGD on L(r) − λ‖r‖₁ from r = −U[0, 1); refinement
— x0 generated from ε + r by a few-step sampler, differentiated through (remat per step), L at t near T with r
plus L at t near 0 without it, gradients clipped.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

FORMS = ("terd", "baddiffusion", "trojdiff")


def forward_coefficients(schedule, t, form="terd", gamma=1.0):
  """(a_t, b_t, c_t) [B] of the unified poisoned forward process x_t = a_t x0 + b_t r + c_t ε for ``form``."""
  if form not in FORMS:
    raise ValueError(f"unknown TERD form {form!r}; use one of {FORMS}")
  ab = schedule.alpha_bar(t)
  a, c = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
  b = jnp.ones_like(a) if form == "terd" else 1.0 - a
  return a, b, (gamma * c if form == "trojdiff" else c)


def reversed_loss(eps_fn, schedule, x0, r, t, noise_1, noise_2, *, form="terd", gamma=1.0, with_trigger=True):
  """TERD's reversed loss for x0 [B, H, W, C], trigger r [H, W, C], indices t [B], noises ε_1, ε_2 like x0 (module
  docstring); ``with_trigger=False``: the same with b_t r left out (the refinement's benign term near t = 0)."""
  a, b, c = (v.reshape((-1,) + (1,) * (x0.ndim - 1)) for v in forward_coefficients(schedule, t, form, gamma))
  shift = b * r if with_trigger else 0.0
  x_1 = a * x0 + c * noise_1 + shift
  x_2 = a * x0 + c * noise_2 + shift
  diff = (noise_1 - eps_fn(x_1, t).astype(jnp.float32)) - (noise_2 - eps_fn(x_2, t).astype(jnp.float32))
  return 0.5 * jnp.mean(jnp.sum(diff ** 2, axis=tuple(range(1, x0.ndim))))


def gaussian_kl(mu, sigma=1.0):
  """Per-dimension KL(N(μ, σ²) ‖ N(0, 1)) = −log σ + (σ² + μ² − 1)/2 (nats), broadcast over ``mu``."""
  mu, sigma = jnp.asarray(mu, jnp.float32), jnp.asarray(sigma, jnp.float32)
  return -jnp.log(sigma) + (sigma ** 2 + mu ** 2 - 1.0) / 2.0


def kl_statistics(mu, sigma=1.0):
  """TERD's model-detection statistics of a reversed trigger: the mean and the variance over dimensions of the
  per-dimension KL of N(μ, σ²I) from N(0, I) (``gaussian_kl``; σ = 1 as in the authors' code). A clean model's
  reversal stays near 0; a backdoored model's moves to its trigger."""
  kl = np.asarray(gaussian_kl(mu, sigma), np.float64).ravel()
  return {"kl_mean": float(kl.mean()), "kl_var": float(kl.var())}


def input_log_likelihood_ratio(x, mu, sigma=1.0):
  """[N] log N(x; μ, σ²I) − log N(x; 0, I) of inputs x [N, H, W, C] (TERD's input detection: poisoned when > 0,
  i.e. the input is likelier under the reversed trigger distribution than under the benign prior)."""
  x = jnp.asarray(x, jnp.float32)
  mu, sigma = jnp.asarray(mu, jnp.float32), jnp.asarray(sigma, jnp.float32)
  per = -jnp.log(sigma) - (x - mu) ** 2 / (2.0 * sigma ** 2) + x ** 2 / 2.0
  return jnp.sum(per.reshape(x.shape[0], -1), axis=-1)


def _timesteps(key, n, lo, hi):
  return jax.random.randint(key, (n,), lo, hi).astype(jnp.float32)


def _optimizer(stage, lr, total, clip_norm):
  """SGD with cosine decay over the stage's ``total`` iterations; the refinement clips gradients (global norm)."""
  sgd = optax.sgd(optax.cosine_decay_schedule(lr, total))
  return sgd if stage == "estimation" else optax.chain(optax.clip_by_global_norm(clip_norm), sgd)


@functools.partial(jax.jit, static_argnames=("eps_fn", "sample_fn", "stage", "n", "total", "batch", "lr",
                                             "weight_decay", "window", "clip_norm", "form", "gamma"))
def _terd_chunk(params, r, state, key, schedule, *, eps_fn, sample_fn, stage, n, total, batch, lr, weight_decay,
                window, clip_norm, form, gamma):
  """``n`` iterations of one stage (lax.scan) from (r, optimizer state); returns them and the n losses."""
  T = schedule.num_timesteps
  eps = functools.partial(eps_fn, params)
  shape = r.shape

  def estimate(r, k):
    k_x, k_t, k_1, k_2 = jax.random.split(k, 4)
    x0 = jax.random.normal(k_x, (batch,) + shape)
    t = _timesteps(k_t, batch, T - window, T)
    loss = reversed_loss(eps, schedule, x0, r, t, jax.random.normal(k_1, x0.shape), jax.random.normal(k_2, x0.shape),
                         form=form, gamma=gamma)
    return loss - weight_decay * jnp.sum(jnp.abs(r)), loss

  def refine(r, k):
    k_n, k_s, k_t1, k_t2, k_1, k_2, k_3, k_4 = jax.random.split(k, 8)
    x0 = 2.0 * sample_fn(params, jax.random.normal(k_n, (batch,) + shape), r, k_s) - 1.0
    normal = lambda kk: jax.random.normal(kk, x0.shape)
    late = reversed_loss(eps, schedule, x0, r, _timesteps(k_t1, batch, T - window, T), normal(k_1), normal(k_2),
                         form=form, gamma=gamma)
    early = reversed_loss(eps, schedule, x0, r, _timesteps(k_t2, batch, 0, window), normal(k_3), normal(k_4),
                          form=form, gamma=gamma, with_trigger=False)
    loss = (late + early) / 2.0
    return loss - weight_decay * jnp.sum(jnp.abs(r)), loss

  objective = estimate if stage == "estimation" else refine
  opt = _optimizer(stage, lr, total, clip_norm)

  def body(carry, kk):
    r, state = carry
    (_, loss), g = jax.value_and_grad(objective, has_aux=True)(r, kk)
    upd, state = opt.update(g, state, r)
    return (optax.apply_updates(r, upd), state), loss

  (r, state), losses = jax.lax.scan(body, (r, state), jax.random.split(key, n))
  return r, state, losses


def terd_invert(params, shape, key, *, eps_fn, schedule, sample_fn, iterations=300, refine_iterations=100, batch=16,
                lr=0.5, weight_decay=5e-5, window=10, clip_norm=0.01, form="terd", gamma=1.0, chunk=25,
                callback=None):
  """TERD's two-stage reversion (module docstring). ``eps_fn(params, x, t)`` → ε_θ; ``sample_fn(params, ε, r,
  key)`` → pixel samples [0, 1] from ε + r (differentiable in r: a remat'd few-step sampler, e.g. 10-step DDIM);
  both are static (one compilation per architecture), the weights an argument. ``schedule``: the model's Schedule.
  Runs in jitted chunks of ``chunk`` iterations; ``callback(stage, done, total)`` after each (a progress bar).
  Returns a dict: "trigger" r [H, W, C] (model space), "estimation_loss" [iterations], "refinement_loss"
  [refine_iterations], and the keys of ``kl_statistics(r)``. The authors' defaults: 3,000 + 1,000 iterations, batch 16, SGD 0.5
  with cosine decay, λ = 5e-5, t within 10 of T (and of 0), gradients clipped to 0.01, 10 DDIM steps."""
  if form not in FORMS:
    raise ValueError(f"unknown TERD form {form!r}; use one of {FORMS}")
  schedule = jax.tree.map(jnp.asarray, schedule)
  k_init, k_run = jax.random.split(key)
  r = -jax.random.uniform(k_init, tuple(shape), jnp.float32)  # the authors' start
  losses = {}
  for stage, total in (("estimation", int(iterations)), ("refinement", int(refine_iterations))):
    state = _optimizer(stage, float(lr), max(total, 1), float(clip_norm)).init(r)
    out = []
    for i in range(0, total, chunk):
      n = min(chunk, total - i)
      r, state, l = _terd_chunk(params, r, state, jax.random.fold_in(jax.random.fold_in(k_run, len(losses)), i),
                                schedule, eps_fn=eps_fn, sample_fn=sample_fn, stage=stage, n=n, total=total,
                                batch=int(batch), lr=float(lr), weight_decay=float(weight_decay), window=int(window),
                                clip_norm=float(clip_norm), form=form, gamma=float(gamma))
      out.append(np.asarray(l))
      if callback is not None:
        callback(stage, i + n, total)
    losses[stage] = np.concatenate(out) if out else np.zeros((0,), np.float32)
    if not np.all(np.isfinite(np.asarray(r))):  # a NaN KL would read as "clean"
      raise FloatingPointError(f"TERD's {stage} diverged: the reversed trigger is not finite; lower the learning "
                               f"rate (lr = {lr:g}) or the batch's noise level")
  r = np.asarray(r)
  return {"trigger": r, "estimation_loss": losses["estimation"], "refinement_loss": losses["refinement"],
          **kl_statistics(r)}
