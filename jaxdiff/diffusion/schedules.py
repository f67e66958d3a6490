"""Noise schedules (DDPM, Ho et al. 2020) as one pytree, and their continuous-time extension.

Conventions (DESIGN §1): timesteps t ∈ {1..T}; arrays are indexed i = t − 1, so
ᾱ_t = ``alphas_cumprod[t-1]`` and networks are called with the index i (diffusers convention).
Continuous VP-SDE time s ∈ [0, 1] maps to the fractional index s·(T−1) (score_sde convention).
"""
from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np

VP_BETA_MIN, VP_BETA_MAX = 0.1, 20.0


@flax.struct.dataclass
class Schedule:
  """Per-index quantities of a discrete diffusion, arrays of length T: numpy float64 when built by
  ``from_betas`` (compile-time constants), float32 jax arrays when passed through ``jit`` as an argument."""
  betas: jnp.ndarray
  alphas_cumprod: jnp.ndarray

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  @property
  def alphas(self):
    return 1.0 - self.betas

  @property
  def log_alphas_cumprod(self):
    return jnp.log(self.alphas_cumprod)

  def alpha_bar(self, t):
    """ᾱ at a (possibly fractional) index t ∈ [0, T−1]: log-linear between integer indices.

    Exactly ``alphas_cumprod[t]`` at integer t (where a network was trained), smooth enough for ODE/SDE
    solvers; the one continuous extension every sampler and the closed-form tests share.
    """
    return interp_alpha_bar(self.alphas_cumprod, t, jnp)

  def index_to_time(self, t):
    """Fractional index → continuous VP-SDE time s = t/(T−1)."""
    return jnp.asarray(t, jnp.float32) / (self.num_timesteps - 1)

  def time_to_index(self, s):
    """Continuous VP-SDE time s ∈ [0, 1] → fractional index s·(T−1)."""
    return jnp.asarray(s, jnp.float32) * (self.num_timesteps - 1)

  def q_sample(self, x0, t, noise):
    """Forward diffusion x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε. x0, noise: NHWC model space; t: [B] indices."""
    ab = _bcast(self.alpha_bar(t), x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise

  def predict_x0(self, x_t, t, eps, clip=False):
    """One-step denoise x̂0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, optionally clipped to [−1, 1]."""
    ab = _bcast(self.alpha_bar(t), x_t)
    x0 = (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
    return jnp.clip(x0, -1.0, 1.0) if clip else x0

  def predict_eps(self, x_t, t, x0):
    """ε implied by x_t and x0 (inverse of ``predict_x0``)."""
    ab = _bcast(self.alpha_bar(t), x_t)
    return (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)

  def sigma_to_index(self, sigma_model):
    """Fractional index whose noise-to-signal ratio √((1−ᾱ)/ᾱ) equals ``sigma_model``.

    Used by denoised smoothing: ᾱ_{t*} = 1/(1 + σ_m²) with σ_m = 2σ_pixel.
    """
    target = -jnp.log1p(jnp.asarray(sigma_model, jnp.float32) ** 2)  # log ᾱ, decreasing in t
    idx = jnp.arange(self.num_timesteps, dtype=jnp.float32)
    return jnp.interp(-target, -self.log_alphas_cumprod, idx)


def interp_alpha_bar(alphas_cumprod, t, xp=jnp):
  """ᾱ(t) = ᾱ_⌊t⌋ (ᾱ_⌈t⌉/ᾱ_⌊t⌋)^(t−⌊t⌋): log-linear, exact at integers. ``xp``: jnp (traced, float32) or
  numpy (host, float64: the samplers' static coefficients)."""
  ac = xp.asarray(alphas_cumprod, xp.float64 if xp is np else jnp.float32)
  t = xp.asarray(t, ac.dtype)
  lo = xp.clip(xp.floor(t), 0, ac.shape[0] - 1)
  hi = xp.minimum(lo + 1, ac.shape[0] - 1)
  a_lo, a_hi = ac[lo.astype(xp.int32)], ac[hi.astype(xp.int32)]
  return a_lo * (a_hi / a_lo) ** (t - lo)


def _bcast(v, x):
  v = jnp.asarray(v, jnp.float32)
  v = jnp.broadcast_to(v, x.shape[:1]) if v.ndim == 0 else v
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)).astype(x.dtype)


def from_betas(betas) -> Schedule:
  """A ``Schedule`` from explicit β_1..β_T (1-D, each in (0, 1)); ᾱ_t = Π_{s≤t}(1 − β_s) in float64, then float32."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or np.any(betas <= 0) or np.any(betas >= 1):
    raise ValueError("betas must be a 1-D array with values in (0, 1)")
  # Host float64 arrays: constants inside jit (cast to float32 where they meet the data), and the exact
  # values the samplers compute their step coefficients from (1 − ᾱ_a/ᾱ_b needs more than float32).
  return Schedule(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas))


def linear_schedule(num_timesteps=1000, beta_start=1e-4, beta_end=0.02) -> Schedule:
  """DDPM linear schedule β_t = β_start + (β_end − β_start)(t−1)/(T−1) (Ho et al. 2020)."""
  return from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def cosine_schedule(num_timesteps=1000, s=0.008, max_beta=0.999) -> Schedule:
  """Cosine schedule of Nichol & Dhariwal 2021: ᾱ(t) ∝ cos²((t/T + s)/(1 + s)·π/2)."""
  f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
  t = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  betas = np.minimum(1 - f(t[1:]) / f(t[:-1]), max_beta)
  return from_betas(betas)


def make_schedule(name="linear", num_timesteps=1000, **kw) -> Schedule:
  """The schedule named in a config: "linear" (Ho et al.: β from 1e-4 to 0.02) or "cosine" (Nichol & Dhariwal)
  with ``num_timesteps`` steps; ``kw`` goes to the constructor."""
  if name == "linear":
    return linear_schedule(num_timesteps, **kw)
  if name == "cosine":
    return cosine_schedule(num_timesteps, **kw)
  raise ValueError(f"unknown schedule {name!r}; use 'linear' or 'cosine'")


def vp_beta(s, beta_min=VP_BETA_MIN, beta_max=VP_BETA_MAX):
  """VP-SDE β(s) = β_min + s(β_max − β_min) (Song et al. 2021); β(s)/T ≈ betas[s·(T−1)]."""
  return beta_min + jnp.asarray(s, jnp.float32) * (beta_max - beta_min)


def vp_log_alpha_bar(s, beta_min=VP_BETA_MIN, beta_max=VP_BETA_MAX):
  """log ᾱ(s) = −∫₀ˢ β = −(β_min s + ½(β_max − β_min) s²)."""
  s = jnp.asarray(s, jnp.float32)
  return -(beta_min * s + 0.5 * (beta_max - beta_min) * s ** 2)
