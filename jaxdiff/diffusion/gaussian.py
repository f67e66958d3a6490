"""Closed-form diffusion of Gaussian data, for tests and sanity checks.

For data x0 ~ N(μ, s²) per pixel the noised marginal at index t is N(√ᾱ μ, ᾱ s² + 1 − ᾱ), so the
MMSE noise predictor is ε*(x_t, t) = √(1−ᾱ) (x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ). Purifying a fixed x (diffuse to
ᾱ, run the exact reverse process) gives x̂0 ~ N(m, v) with k = ᾱs²/D, D = ᾱs² + 1 − ᾱ:
  stochastic (posterior sample):  m = μ + k(x − μ),        v = s²(1−ᾱ)/D + k²(1−ᾱ)/ᾱ
  deterministic (PF-ODE map):     m = μ + (s√ᾱ/√D)(x − μ), v = s²(1−ᾱ)/D
"""
import jax.numpy as jnp


def gaussian_eps_fn(schedule, mu, s):
  """The exact ε-predictor of data x_0 ~ N(mu, s²I) (model space): ε*(x_t, t) = √(1−ᾱ)(x_t − √ᾱ mu) /
  (ᾱ s² + 1 − ᾱ). A closed-form stand-in for a network in tests of the samplers."""
  def eps_fn(x_t, t):
    ab = schedule.alpha_bar(t).reshape((-1,) + (1,) * (x_t.ndim - 1))
    return jnp.sqrt(1 - ab) * (x_t - jnp.sqrt(ab) * mu) / (ab * s ** 2 + 1 - ab)
  return eps_fn


def purified_moments(alpha_bar, x, mu, s, stochastic):
  """Exact mean and variance of x̂0 when purifying x through noise level ᾱ (see module doc)."""
  d = alpha_bar * s ** 2 + 1 - alpha_bar
  if stochastic:
    k = alpha_bar * s ** 2 / d
    return mu + k * (x - mu), s ** 2 * (1 - alpha_bar) / d + k ** 2 * (1 - alpha_bar) / alpha_bar
  g = s * jnp.sqrt(alpha_bar / d)
  return mu + g * (x - mu), s ** 2 * (1 - alpha_bar) / d
