"""Inpainting: known pixels come back exactly, unknown ones follow the prior, and with correlated data the
erased region is filled consistently with the known pixels (closed-form ε of a rank-one Gaussian)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion as D

SCHED = D.linear_schedule()


def _constant_image_eps(mu, s, n):
  """Exact ε for images whose n pixels all equal one value c ~ N(μ, s²): Σ = s²11ᵀ, Sherman–Morrison."""
  def eps(x, t):
    ab = SCHED.alpha_bar(t)[:, None, None, None]
    d = x - jnp.sqrt(ab) * mu
    mean = jnp.mean(d, axis=(1, 2, 3), keepdims=True) * n
    return jnp.sqrt(1 - ab) / (1 - ab) * (d - ab * s ** 2 * mean / ((1 - ab) + ab * s ** 2 * n))
  return eps


@pytest.mark.parametrize("kind", ["line", "box"])
def test_erased_region_filled_from_the_known_pixels(kind):
  c = jnp.linspace(-0.8, 0.8, 64)[:, None, None, None]
  x = jnp.broadcast_to(c, (64, 8, 8, 1))
  xc, mask, noise_std = D.corrupt(x, kind, jax.random.key(0))
  hole = np.asarray(mask)[..., 0] == 0
  assert noise_std == 0 and hole.sum() == (8 * 1 if kind == "line" else 16) and np.all(np.asarray(xc)[:, hole] == -1)
  y = np.asarray(D.inpaint(_constant_image_eps(0.0, 0.5, 64), SCHED, xc, mask, key=jax.random.key(1), sampler="ddpm"))
  np.testing.assert_array_equal(y[:, ~hole], np.asarray(x)[:, ~hole])  # known pixels exactly
  err = np.abs(y[:, hole] - np.asarray(c)[:, 0])
  assert err.mean() < 0.05, err.mean()  # the hole takes the image's value
  free = np.asarray(D.sample(_constant_image_eps(0.0, 0.5, 64), SCHED, key=jax.random.key(1), shape=x.shape,
                             sampler="ddpm"))
  assert np.abs(free[:, hole] - np.asarray(c)[:, 0]).mean() > 0.3  # without the known pixels it does not


def test_noisy_pixels_reimposed_only_above_their_noise_level():
  x = jnp.full((256, 8, 8, 1), 0.5)
  xc, mask, noise_std = D.corrupt(x, "blur", jax.random.key(0), noise_std=0.3)
  assert noise_std == 0.3 and float(jnp.std(xc - x)) == pytest.approx(0.6, rel=0.02)
  eps = _constant_image_eps(0.0, 0.5, 64)
  y = np.asarray(D.inpaint(eps, SCHED, xc, mask, key=jax.random.key(1), sampler="ddpm", noise_std=noise_std))
  # the pixels' noise is independent, the data a constant image: the recovery averages it away
  assert np.abs(y - 0.5).mean() < 0.15 and np.abs(np.asarray(xc) - 0.5).mean() > 0.4
  assert float(SCHED.alpha_bar(SCHED.sigma_to_index(0.6))) == pytest.approx(1 / (1 + 0.36), rel=1e-3)
  with pytest.raises(ValueError, match="unknown corruption"):
    D.corrupt(x, "rain", jax.random.key(0))
