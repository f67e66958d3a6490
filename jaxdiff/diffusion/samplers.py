"""Reverse-time samplers: DDPM ancestral, DDIM, VP-SDE Euler–Maruyama, probability-flow ODE, DPM-Solver++(2M).

All samplers are model-agnostic: they call ``eps_fn(x_t, t)`` with x_t NHWC float32 in model space
[−1, 1] and t a float32 [B] array of (possibly fractional) timestep indices in [0, T−1]. Each is a
``lax.scan`` over the network evaluations a_0 > a_1 > … > a_{K−1}: step i goes from index a_i to b_i,
then x̂0 is predicted at a_{K−1}, so ``num_steps`` = K counts network evaluations (Heun: about twice that),
and ``num_steps=1`` is one-shot denoising from t_start. Everything is traceable: call inside ``jit``,
differentiate end to end, and set ``remat=True`` to rematerialise each step (``jax.checkpoint``) when
backpropagating through long chains.

Grids (``timestep_spacing``): "default" — K indices evenly spaced from t_start down to 0 (rounded for the
discrete samplers); "linspace" | "leading" | "trailing" — diffusers' spacings over T' = t_start + 1 indices.
Step i moves to b_i = a_{i+1}, except DDIM with a diffusers spacing, which moves to a_i − ⌊T'/K⌋ as
diffusers' DDIMScheduler does (the same index but for "linspace", where they can differ by one). For
sampling (t_start = T − 1) the chains are step for step those of diffusers' DDPMScheduler / DDIMScheduler /
DPMSolverMultistepScheduler (whose "linspace" and "leading" grids take K + 1 points and drop the last).

The coefficients of every step are computed once, on the host in float64, from ``alphas_cumprod``
(exact at integer indices), then cast to float32: no cancellation in 1 − ᾱ_a/ᾱ_b. Only when t_start is
traced (denoised smoothing at a traced σ) or the schedule itself is a jit argument are they computed on the
device in float32.

Steps between indices a > b, with ᾱ_a, ᾱ_b from ``Schedule.alpha_bar`` and λ = −log ᾱ:
- ddpm: x_b ~ q(x_b | x_a, x̂0) (posterior of Ho et al. Eq. 6–7 for the respaced pair), variance β̃
  ("posterior"), β' = 1 − ᾱ_a/ᾱ_b ("beta") or exp(v log β' + (1 − v) log β̃) with v = (out + 1)/2 from the
  network's second C channels ("learned", Nichol & Dhariwal 2021 Eq. 15).
- ddim: x_b = √ᾱ_b x̂0 + √(1 − ᾱ_b − σ²) ε + σ z, σ = η √((1−ᾱ_b)/(1−ᾱ_a)) √(1 − ᾱ_a/ᾱ_b).
- sde:  reverse VP-SDE in λ-time, Euler–Maruyama: x_b = x + h(½x − ε/√(1−ᾱ_a)) + √h z, h = λ_a − λ_b.
- ode:  probability-flow ODE dx/dλ = −½x + ½ε/√(1−ᾱ); Euler or Heun (default) steps.
- dpm_solver++: multistep second order in data prediction (Lu et al. 2022, Alg. 2 "2M", midpoint form, as
  diffusers' algorithm_type="dpmsolver++", solver_order=2); with α = √ᾱ, σ = √(1−ᾱ), ℓ = log(α/σ),
  h = ℓ_b − ℓ_a, r = h_prev/h: x_b = (σ_b/σ_a) x − α_b(e^{−h} − 1)(x̂0_a + (x̂0_a − x̂0_prev)/(2r)); the first
  step is first order (no x̂0_prev yet); the last evaluation returns x̂0 (diffusers' final_sigmas_type="zero").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.diffusion.schedules import Schedule, interp_alpha_bar

SAMPLERS = ("ddpm", "ddim", "sde", "ode", "dpm_solver++")
DISCRETE = ("ddpm", "ddim", "dpm_solver++")  # evaluated at integer indices only (rounded grids)
STOCHASTIC = ("ddpm", "sde")  # (ddim with eta > 0 too)
SPACINGS = ("default", "linspace", "leading", "trailing")
_OPTIONS = {"ddpm": ("variance", "noise_scale"), "ddim": ("eta", "noise_scale"), "sde": (), "ode": ("solver",),
            "dpm_solver++": ()}


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


def timestep_pairs(t_start, num_steps, discrete, spacing="default", stride_target=False, drop_last=False):
  """(a, b): the K evaluation indices a_i (decreasing) and the index b_i that step i moves to (b_{K−1} is
  unused: x̂0 is predicted at a_{K−1}); ``stride_target``: b_i = a_i − ⌊T'/K⌋ (diffusers' DDIM) instead of
  a_{i+1}; ``drop_last``: "default"/"linspace"/"leading" grids of K + 1 points without the last, index 0
  (diffusers' DPMSolverMultistepScheduler: a second-order jump to ᾱ_0 ≈ 1 overshoots). numpy for a static ``t_start``, jnp when it is traced."""
  if spacing not in SPACINGS:
    raise ValueError(f"unknown timestep_spacing {spacing!r}; choose one of {SPACINGS}")
  if isinstance(t_start, jax.core.Tracer):
    if spacing != "default" or num_steps is None:
      raise ValueError("a traced t_start needs timestep_spacing='default' and an explicit num_steps")
    a = jnp.linspace(t_start, 0.0, num_steps + 1)[:num_steps] if drop_last else jnp.linspace(t_start, 0.0, num_steps)
    a = jnp.round(a) if discrete else a
    return a, jnp.concatenate([a[1:], a[-1:]])
  if spacing == "default":
    extra = drop_last and num_steps is not None and int(num_steps) <= int(t_start)
    a = time_grid(t_start, num_steps + 1 if extra else num_steps, discrete).astype(np.float64)
    a = a[:-1] if extra else a
    return a, np.concatenate([a[1:], a[-1:]])
  total = int(t_start) + 1
  k = total if num_steps is None else int(num_steps)
  if not 1 <= k <= total:
    raise ValueError(f"num_steps must be in [1, {total}] for timestep_spacing={spacing!r}, got {k}")
  n = k + 1 if drop_last else k
  if spacing == "linspace":
    a = np.linspace(0, total - 1, n).round()[::-1][:k]
  elif spacing == "leading":
    a = (np.arange(n) * (total // n)).round()[::-1][:k]
  else:  # trailing
    a = np.round(np.arange(total, 0, -total / k)) - 1
  a = a.astype(np.float64)
  if stride_target:
    return a, np.maximum(a - total // k, 0.0)
  return a, np.concatenate([a[1:], a[-1:]])


def _coefficients(sampler, alphas_cumprod, a, b, xp, *, variance="posterior", eta=0.0, solver="heun",
                  noise_scale=1.0):
  """Per-step scalars [K] of ``sampler`` for the pairs (a, b), in float64 (numpy) or float32 (jnp)."""
  ab_a, ab_b = interp_alpha_bar(alphas_cumprod, a, xp), interp_alpha_bar(alphas_cumprod, b, xp)
  c = {"t": a, "sqrt_ab": xp.sqrt(ab_a), "sqrt_1m_ab": xp.sqrt(1.0 - ab_a)}  # x̂0 = (x − √(1−ᾱ)ε)/√ᾱ
  ratio = ab_a / ab_b
  if sampler == "ddpm":
    beta = 1.0 - ratio
    c["coef_x0"] = xp.sqrt(ab_b) * beta / (1.0 - ab_a)
    c["coef_xt"] = xp.sqrt(ratio) * (1.0 - ab_b) / (1.0 - ab_a)
    if variance not in ("posterior", "beta", "learned"):
      raise ValueError(f"unknown DDPM variance {variance!r}; use 'posterior', 'beta' or 'learned'")
    post = beta * (1.0 - ab_b) / (1.0 - ab_a)
    if variance == "learned":  # Nichol & Dhariwal Eq. 15: log σ² = v log β + (1 − v) log β̃, v = (out + 1)/2
      tiny = xp.finfo(xp.float32).tiny  # β̃ = 0 only for a step into ᾱ = 1, which the chain never takes
      c.update(log_beta=xp.log(xp.maximum(beta, tiny)), log_post=xp.log(xp.maximum(post, tiny)),
               noise_scale=noise_scale * xp.ones_like(beta))
    else:
      c["std"] = noise_scale * xp.sqrt(xp.maximum(post if variance == "posterior" else beta, 0.0))
  elif sampler == "ddim":
    sigma = eta * xp.sqrt(xp.maximum((1.0 - ab_b) / (1.0 - ab_a) * (1.0 - ratio), 0.0))
    c.update(sqrt_ab_b=xp.sqrt(ab_b), sigma=noise_scale * sigma,
             dir=xp.sqrt(xp.maximum(1.0 - ab_b - sigma ** 2, 0.0)))
  elif sampler == "dpm_solver++":
    lam = lambda ab: 0.5 * (xp.log(ab) - xp.log(1.0 - ab))  # log(α/σ)
    h = lam(ab_b) - lam(ab_a)
    h_prev = xp.concatenate([h[:1], lam(ab_a[1:]) - lam(ab_a[:-1])])  # ℓ_a − ℓ_{a_prev}; unused at step 0
    c_x0 = -xp.sqrt(ab_b) * xp.expm1(-h)
    first = xp.arange(h.shape[0]) == 0
    c.update(c_x=xp.sqrt((1.0 - ab_b) / (1.0 - ab_a)), c_x0=c_x0,
             c_d=xp.where(first, 0.0, 0.5 * c_x0 * h / xp.where(first, 1.0, h_prev)))
  elif sampler in ("sde", "ode"):
    h = xp.log(ab_b) - xp.log(ab_a)
    c.update(h=h, sqrt_h=xp.sqrt(h), inv_a=1.0 / xp.sqrt(1.0 - ab_a), inv_b=1.0 / xp.sqrt(1.0 - ab_b), t_b=b)
    if sampler == "ode" and solver not in ("euler", "heun"):
      raise ValueError(f"unknown ODE solver {solver!r}; use 'euler' or 'heun'")
  return c


def _eps(eps_fn, x, t):
  return eps_fn(x, jnp.full((x.shape[0],), t, jnp.float32)).astype(jnp.float32)


def _eps_and_v(eps_fn, x, t):
  """(ε, v) of a learned-variance network: ``eps_fn`` returns 2C channels, ε first (the OpenAI split)."""
  out = _eps(eps_fn, x, t)
  if out.shape[-1] != 2 * x.shape[-1]:
    raise ValueError(f"variance='learned' needs a network with 2C = {2 * x.shape[-1]} output channels (ε, v), "
                     f"got {out.shape[-1]}: pass the whole output (eps_fn_of(model, params, learned_sigma=True))")
  return out[..., :x.shape[-1]], out[..., x.shape[-1]:]


def _x0(c, x, eps, clip):
  x0 = (x - c["sqrt_1m_ab"] * eps) / c["sqrt_ab"]
  return jnp.clip(x0, -1.0, 1.0) if clip else x0


def _step(sampler, eps_fn, x, c, key, *, clip_x0, eta, solver, x0_prev=None):
  """One step x_a → x_b of ``sampler`` with the coefficient row ``c`` (see ``_coefficients``); returns x_b,
  and (x_b, x̂0_a) for dpm_solver++ (whose next step reads x̂0_a)."""
  if "log_beta" in c:  # ddpm with the learned variance
    eps, v = _eps_and_v(eps_fn, x, c["t"])
    frac = (v + 1.0) / 2.0
    std = c["noise_scale"] * jnp.exp(0.5 * (frac * c["log_beta"] + (1.0 - frac) * c["log_post"]))
    x0 = _x0(c, x, eps, clip_x0)
    return c["coef_x0"] * x0 + c["coef_xt"] * x + std * jax.random.normal(key, x.shape, x.dtype)
  eps = _eps(eps_fn, x, c["t"])
  if sampler == "dpm_solver++":
    x0 = _x0(c, x, eps, clip_x0)
    return c["c_x"] * x + c["c_x0"] * x0 + c["c_d"] * (x0 - x0_prev), x0
  if sampler == "ddpm":
    x0 = _x0(c, x, eps, clip_x0)
    return c["coef_x0"] * x0 + c["coef_xt"] * x + c["std"] * jax.random.normal(key, x.shape, x.dtype)
  if sampler == "ddim":
    x0 = _x0(c, x, eps, clip_x0)
    if clip_x0:  # the ε consistent with the clipped x̂0 (diffusers' use_clipped_model_output=True)
      eps = (x - c["sqrt_ab"] * x0) / c["sqrt_1m_ab"]
    x = c["sqrt_ab_b"] * x0 + c["dir"] * eps
    return x + c["sigma"] * jax.random.normal(key, x.shape, x.dtype) if eta else x
  if sampler == "sde":
    return x + c["h"] * (0.5 * x - eps * c["inv_a"]) + c["sqrt_h"] * jax.random.normal(key, x.shape, x.dtype)
  d_a = 0.5 * x - 0.5 * eps * c["inv_a"]  # ode
  x_euler = x + c["h"] * d_a
  if solver == "euler":
    return x_euler
  d_b = 0.5 * x_euler - 0.5 * _eps(eps_fn, x_euler, c["t_b"]) * c["inv_b"]
  return x + 0.5 * c["h"] * (d_a + d_b)


def reverse(eps_fn, schedule: Schedule, x_t, *, key, t_start, sampler, num_steps=None, remat=False,
            clip_x0=False, timestep_spacing="default", known=None, **options):
  """Runs ``sampler`` from x_t at index ``t_start`` back to x̂0 (model space), see module doc.

  ``known`` = (x_known, mask, until): inpainting — after every step to an index b ≥ ``until`` the pixels where
  ``mask`` is 1 are replaced by x_known noised to b (√ᾱ_b x_known + √(1−ᾱ_b) z); with ``until`` 0 they are
  also pasted into the result.

  options: ddpm ``variance`` ("posterior" | "beta" | "learned": the network returns 2C channels (ε, v) and the
  step's log-variance interpolates log β and log β̃ of the (respaced) pair, as improved diffusion does); ddim ``eta`` (0.0); ode ``solver`` ("heun" | "euler");
  ddpm/ddim ``noise_scale`` multiplies the step noise (TrojDiff's γ); ``clip_x0`` clips x̂0 to [−1, 1] inside
  ddpm/ddim/dpm_solver++ steps and at the end (diffusers' ``clip_sample``).
  """
  if sampler not in _OPTIONS:
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
  bad = set(options) - set(_OPTIONS[sampler])
  if bad:
    raise TypeError(f"sampler {sampler!r} takes options {_OPTIONS[sampler]}, got {sorted(bad)}")
  eta, solver = options.get("eta", 0.0), options.get("solver", "heun")
  a, b = timestep_pairs(t_start, num_steps, sampler in DISCRETE, timestep_spacing, stride_target=sampler == "ddim",
                        drop_last=sampler == "dpm_solver++")
  on_device = any(isinstance(v, jax.core.Tracer) for v in (t_start, schedule.alphas_cumprod))
  xp = jnp if on_device else np
  ac = schedule.alphas_cumprod if on_device else np.asarray(schedule.alphas_cumprod)
  coef = _coefficients(sampler, ac, a, b, xp, **options)
  if known is not None:
    ab_b = interp_alpha_bar(ac, b, xp)
    coef.update(known_sqrt_ab=xp.sqrt(ab_b), known_sqrt_1m_ab=xp.sqrt(1.0 - ab_b),
                known_on=(b >= known[2]) * 1.0)
  coef = {k: jnp.asarray(v, jnp.float32) for k, v in coef.items()}
  clip = clip_x0 and sampler in DISCRETE
  x_t = jnp.asarray(x_t, jnp.float32)

  def body(carry, c):
    x, k, x0_prev = carry
    k, sub = jax.random.split(k)
    x = _step(sampler, eps_fn, x, c, sub, clip_x0=clip, eta=eta, solver=solver, x0_prev=x0_prev)
    x, x0_prev = x if sampler == "dpm_solver++" else (x, x0_prev)
    if known is not None:
      x_known, mask, _ = known
      noised = c["known_sqrt_ab"] * x_known + c["known_sqrt_1m_ab"] * jax.random.normal(
          jax.random.fold_in(sub, 1), x.shape, x.dtype)
      x = x + c["known_on"] * mask * (noised - x)
    return (x, k, x0_prev), None

  if remat:  # True: keep only each step's carry; a jax.checkpoint_policies policy: also what it saves
    body = jax.checkpoint(body, policy=None if remat is True else remat)
  steps = a.shape[0] - 1
  if steps:
    (x_t, key, _), _ = jax.lax.scan(body, (x_t, key, jnp.zeros_like(x_t)), {k: v[:steps] for k, v in coef.items()})
  last = {k: v[steps] for k, v in coef.items()}
  eps = _eps_and_v(eps_fn, x_t, last["t"])[0] if "log_beta" in last else _eps(eps_fn, x_t, last["t"])
  x0 = _x0(last, x_t, eps, clip_x0)
  if known is not None and not known[2]:
    x0 = x0 + known[1] * (known[0] - x0)
  return x0


def sample(eps_fn, schedule: Schedule, *, key, shape=None, sampler, num_steps=None, x_init=None, **options):
  """Generates x0 (model space, NHWC ``shape``) from x_T at index T − 1: x_T ~ N(0, I), or ``x_init`` when
  given (e.g. ε + g, the triggered noise of BadDiffusion). ``options`` as ``reverse``."""
  k_init, k_rev = jax.random.split(key)
  x_t = jax.random.normal(k_init, shape, jnp.float32) if x_init is None else jnp.asarray(x_init, jnp.float32)
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
