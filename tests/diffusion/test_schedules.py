import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion as D


def test_linear_schedule_values():
  s = D.linear_schedule()
  b = np.asarray(s.betas, np.float64)
  assert s.num_timesteps == 1000 and b.shape == (1000,)
  np.testing.assert_allclose([b[0], b[-1]], [1e-4, 0.02], rtol=1e-6)
  np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999, rtol=1e-4)
  np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - b), rtol=1e-5)
  # Published value used throughout DiffPure/DIFF2: alpha_bar at t = 75.
  np.testing.assert_allclose(s.alphas_cumprod[74], np.prod(1 - b[:75]), rtol=1e-6)


def test_alpha_bar_interpolates_exactly_at_integers_and_monotone():
  s = D.linear_schedule()
  np.testing.assert_allclose(s.alpha_bar(jnp.arange(1000.)), s.alphas_cumprod, rtol=1e-5)
  mid = s.alpha_bar(jnp.arange(999.) + 0.5)
  assert np.all(mid < s.alphas_cumprod[:-1]) and np.all(mid > s.alphas_cumprod[1:])


def test_vp_sde_time_map_matches_discrete_betas():
  s = D.linear_schedule()
  i = np.arange(1000)
  np.testing.assert_allclose(D.vp_beta(s.index_to_time(i)) / 1000, s.betas, rtol=1e-5)
  np.testing.assert_allclose(s.time_to_index(s.index_to_time(i)), i, atol=1e-3)
  # ∫β matches the discrete −log ᾱ up to one step (the sum has i + 1 terms) and O(β²).
  cont = D.vp_log_alpha_bar(s.index_to_time(i[10:]))
  np.testing.assert_allclose(cont, np.log(s.alphas_cumprod[10:]), rtol=1e-2, atol=1e-3)


def test_cosine_schedule_follows_formula():
  s = D.cosine_schedule(1000)
  f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
  t = np.arange(1, 1001) / 1000
  np.testing.assert_allclose(s.alphas_cumprod[:900], (f(t) / f(0))[:900], rtol=1e-4)


def test_q_sample_moments_and_predict_x0_inverse():
  s = D.linear_schedule()
  x0 = jnp.full((20000, 2, 2, 1), 0.5)
  t = jnp.full((20000,), 299.)
  noise = jax.random.normal(jax.random.key(0), x0.shape)
  xt = s.q_sample(x0, t, noise)
  ab = float(s.alphas_cumprod[299])
  assert abs(float(xt.mean()) - np.sqrt(ab) * 0.5) < 0.01
  assert abs(float(xt.var()) - (1 - ab)) < 0.01
  np.testing.assert_allclose(s.predict_x0(xt, t, noise), x0, atol=1e-5)
  np.testing.assert_allclose(s.predict_eps(xt, t, x0), noise, atol=1e-4)


def test_sigma_to_index_inverts_noise_level():
  s = D.linear_schedule()
  for sigma_pixel in (0.25, 0.5, 1.0):
    t = s.sigma_to_index(2 * sigma_pixel)
    np.testing.assert_allclose(s.alpha_bar(t), 1 / (1 + (2 * sigma_pixel) ** 2), rtol=1e-4)


def test_bad_betas_rejected():
  with pytest.raises(ValueError):
    D.from_betas([0.1, 1.2])
