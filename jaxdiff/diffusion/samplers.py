"""Reverse-time samplers: DDPM ancestral, DDIM, VP-SDE Euler–Maruyama, probability-flow ODE.

All samplers are model-agnostic: they call ``eps_fn(x_t, t)`` with x_t NHWC float32 in model space
[−1, 1] and t a float32 [B] array of (possibly fractional) timestep indices in [0, T−1]. Each is a
``lax.scan`` over a decreasing index grid t_0 = t_start > … > t_{K−1} = 0 followed by the one-step
denoise x̂0 at index 0, so ``num_steps`` counts network evaluations (Heun: about twice that), and
``num_steps=1`` is one-shot denoising from t_start. Everything is traceable: call inside ``jit``,
differentiate end to end, and set ``remat=True`` to rematerialise each step (``jax.checkpoint``) when
backpropagating through long chains.

Steps between grid indices a > b, with ᾱ_a, ᾱ_b from ``Schedule.alpha_bar`` and λ = −log ᾱ:
- ddpm: x_b ~ q(x_b | x_a, x̂0) (posterior of Ho et al. Eq. 6–7 for the respaced pair), variance β̃
  ("posterior") or β' = 1 − ᾱ_a/ᾱ_b ("beta").
- ddim: x_b = √ᾱ_b x̂0 + √(1 − ᾱ_b − σ²) ε + σ z, σ = η √((1−ᾱ_b)/(1−ᾱ_a)) √(1 − ᾱ_a/ᾱ_b).
- sde:  reverse VP-SDE in λ-time, Euler–Maruyama: x_b = x + h(½x − ε/√(1−ᾱ_a)) + √h z, h = λ_a − λ_b.
- ode:  probability-flow ODE dx/dλ = −½x + ½ε/√(1−ᾱ); Euler or Heun (default) steps.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.diffusion.schedules import Schedule, _bcast

SAMPLERS = ("ddpm", "ddim", "sde", "ode")
DISCRETE = ("ddpm", "ddim")


def time_grid(t_start: int, num_steps: int | None, discrete: bool) -> np.ndarray:
  """Decreasing grid of ``num_steps`` indices from ``t_start`` to 0 (default: every index)."""
  t_start = int(t_start)
  num_steps = t_start + 1 if num_steps is None else int(num_steps)
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if num_steps == 1:
    return np.array([float(t_start)], np.float32)
  grid = np.linspace(t_start, 0, num_steps)
  if discrete:
    if num_steps > t_start + 1:
      raise ValueError(f"a discrete sampler takes at most t_start + 1 = {t_start + 1} steps, got {num_steps}")
    grid = np.round(grid)
  return grid.astype(np.float32)


def _eps(eps_fn, x, t):
  return eps_fn(x, jnp.full((x.shape[0],), t, jnp.float32)).astype(jnp.float32)


def _ddpm_step(eps_fn, sched, x, a, b, key, *, variance="posterior", clip_x0=False):
  ab_a, ab_b = sched.alpha_bar(a), sched.alpha_bar(b)
  eps = _eps(eps_fn, x, a)
  x0 = sched.predict_x0(x, jnp.full(x.shape[:1], a), eps, clip=clip_x0)
  alpha = ab_a / ab_b
  beta = 1.0 - alpha
  mean = (jnp.sqrt(ab_b) * beta / (1.0 - ab_a)) * x0 + (jnp.sqrt(alpha) * (1.0 - ab_b) / (1.0 - ab_a)) * x
  var = beta * (1.0 - ab_b) / (1.0 - ab_a) if variance == "posterior" else beta
  return mean + jnp.sqrt(var) * jax.random.normal(key, x.shape, x.dtype)


def _ddim_step(eps_fn, sched, x, a, b, key, *, eta=0.0, clip_x0=False):
  ab_a, ab_b = sched.alpha_bar(a), sched.alpha_bar(b)
  eps = _eps(eps_fn, x, a)
  x0 = sched.predict_x0(x, jnp.full(x.shape[:1], a), eps, clip=clip_x0)
  if clip_x0:
    eps = sched.predict_eps(x, jnp.full(x.shape[:1], a), x0)
  sigma = eta * jnp.sqrt((1.0 - ab_b) / (1.0 - ab_a) * (1.0 - ab_a / ab_b))
  x = jnp.sqrt(ab_b) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_b - sigma ** 2, 0.0)) * eps
  return x + sigma * jax.random.normal(key, x.shape, x.dtype) if eta else x


def _sde_step(eps_fn, sched, x, a, b, key):
  ab_a, ab_b = sched.alpha_bar(a), sched.alpha_bar(b)
  h = jnp.log(ab_b) - jnp.log(ab_a)
  eps = _eps(eps_fn, x, a)
  drift = 0.5 * x - eps / jnp.sqrt(1.0 - ab_a)
  return x + h * drift + jnp.sqrt(h) * jax.random.normal(key, x.shape, x.dtype)


def _ode_step(eps_fn, sched, x, a, b, key, *, solver="heun"):
  del key
  ab_a, ab_b = sched.alpha_bar(a), sched.alpha_bar(b)
  h = jnp.log(ab_b) - jnp.log(ab_a)
  slope = lambda y, t, ab: 0.5 * y - 0.5 * _eps(eps_fn, y, t) / jnp.sqrt(1.0 - ab)
  d_a = slope(x, a, ab_a)
  x_euler = x + h * d_a
  if solver == "euler":
    return x_euler
  if solver != "heun":
    raise ValueError(f"unknown ODE solver {solver!r}; use 'euler' or 'heun'")
  return x + 0.5 * h * (d_a + slope(x_euler, b, ab_b))


_STEPS = {"ddpm": _ddpm_step, "ddim": _ddim_step, "sde": _sde_step, "ode": _ode_step}
_OPTIONS = {"ddpm": ("variance", "clip_x0"), "ddim": ("eta", "clip_x0"), "sde": (), "ode": ("solver",)}


def reverse(eps_fn, schedule: Schedule, x_t, *, key, t_start, sampler, num_steps=None,
            remat=False, clip_x0=False, **options):
  """Runs ``sampler`` from x_t at index ``t_start`` back to x̂0 (model space), see module doc.

  options: ddpm ``variance`` ("posterior" | "beta"); ddim ``eta`` (0.0); ode ``solver``
  ("heun" | "euler"); ``clip_x0`` clips x̂0 to [−1, 1] inside ddpm/ddim steps and at the end.
  """
  if sampler not in _STEPS:
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
  allowed = _OPTIONS[sampler]
  bad = set(options) - set(allowed)
  if bad:
    raise TypeError(f"sampler {sampler!r} takes options {allowed}, got {sorted(bad)}")
  if sampler in DISCRETE:
    options["clip_x0"] = clip_x0
  step = functools.partial(_STEPS[sampler], eps_fn, schedule, **options)
  grid = time_grid(t_start, num_steps, discrete=sampler in DISCRETE)
  x_t = jnp.asarray(x_t, jnp.float32)

  def body(carry, ab):
    x, k = carry
    k, sub = jax.random.split(k)
    return (step(x, ab[0], ab[1], sub), k), None

  if remat:
    body = jax.checkpoint(body)
  if len(grid) > 1:
    pairs = jnp.asarray(np.stack([grid[:-1], grid[1:]], -1))
    (x_t, key), _ = jax.lax.scan(body, (x_t, key), pairs)
  t_last = jnp.full(x_t.shape[:1], grid[-1], jnp.float32)
  return schedule.predict_x0(x_t, t_last, _eps(eps_fn, x_t, grid[-1]), clip=clip_x0)


def sample(eps_fn, schedule: Schedule, *, key, shape, sampler, num_steps=None, **options):
  """Generates x0 (model space, NHWC ``shape``) from x_{T} ~ N(0, I) at index T − 1."""
  k_init, k_rev = jax.random.split(key)
  x_t = jax.random.normal(k_init, shape, jnp.float32)
  return reverse(eps_fn, schedule, x_t, key=k_rev, t_start=schedule.num_timesteps - 1,
                 sampler=sampler, num_steps=num_steps, **options)


def diffuse(schedule: Schedule, x, t_bar: int, key):
  """x (model space) diffused to timestep t_bar: √ᾱ x + √(1−ᾱ) ε with ᾱ = alphas_cumprod[t_bar−1]."""
  if not 1 <= int(t_bar) <= schedule.num_timesteps:
    raise ValueError(f"t_bar must be in [1, {schedule.num_timesteps}], got {t_bar}")
  noise = jax.random.normal(key, x.shape, jnp.float32)
  return schedule.q_sample(x, jnp.full(x.shape[:1], t_bar - 1, jnp.float32), noise)


def purify(eps_fn, schedule: Schedule, x, *, key, t_bar, sampler, num_steps=None, **options):
  """DiffPure purification: x (model space) diffused to timestep t_bar, then reversed to x̂0."""
  k_fwd, k_rev = jax.random.split(key)
  x_t = diffuse(schedule, jnp.asarray(x, jnp.float32), t_bar, k_fwd)
  return reverse(eps_fn, schedule, x_t, key=k_rev, t_start=int(t_bar) - 1, sampler=sampler,
                 num_steps=num_steps, **options)


def one_step_denoise(eps_fn, schedule: Schedule, x_t, t, clip=False):
  """x̂0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t))/√ᾱ_t for an index t (scalar or [B])."""
  t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
  return schedule.predict_x0(x_t, t, eps_fn(x_t, t).astype(jnp.float32), clip=clip)
