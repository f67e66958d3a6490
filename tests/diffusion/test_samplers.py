"""Every sampler against the closed-form answer for Gaussian data N(μ, s²) (see diffusion/gaussian.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import runtime_jit
from jaxdiff import diffusion as D
from jaxdiff.diffusion.gaussian import purified_moments

MU, S = 0.3, 0.5
SCHED = D.linear_schedule()
EPS = D.gaussian_eps_fn(SCHED, MU, S)
SHAPE = (4096, 4, 4, 1)  # 65,536 independent pixels: Monte-Carlo error ≈ 0.4% on the mean, 0.6% on var
STOCHASTIC = {"ddpm": True, "ddim": False, "sde": True, "ode": False, "dpm_solver++": False}


@functools.lru_cache(maxsize=None)
def _purify(sampler, x_value=0.8, **opts):
  x = jnp.full(SHAPE, x_value)
  f = runtime_jit(lambda k: D.purify(EPS, SCHED, x, key=k, t_bar=75, sampler=sampler, **opts))
  return np.asarray(f(jax.random.key(1)))


@pytest.mark.parametrize("sampler", D.SAMPLERS)
def test_generation_recovers_data_distribution(sampler):
  x = runtime_jit(lambda k: D.sample(EPS, SCHED, key=k, shape=SHAPE, sampler=sampler))(jax.random.key(0))
  assert abs(float(x.mean()) - MU) < 0.01
  assert abs(float(x.std()) / S - 1) < 0.015


@pytest.mark.parametrize("sampler", D.SAMPLERS)
def test_purification_matches_closed_form(sampler):
  y = _purify(sampler)
  m, v = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, STOCHASTIC[sampler])
  assert abs(y.mean() - float(m)) < 0.005
  # DDPM's ancestral step with the posterior variance β̃ plugs in x̂0 = E[x0|x_t] and drops
  # coef²·Var[x0|x_t]; over 75 steps that lowers the variance by ~3.4% here (an inherent bias
  # of the sampler, not of this code: variance="beta" and the SDE sampler land within 1%).
  tol = 0.05 if sampler == "ddpm" else 0.015
  assert abs(y.var() / float(v) - 1) < tol


def test_stochastic_and_deterministic_purification_differ():
  # The closed forms differ (posterior sample vs transport map); the samplers must land on each.
  m_s, v_s = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, True)
  m_d, v_d = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, False)
  assert abs(float(m_s - m_d)) > 0.04 and float(v_s / v_d) > 1.3
  sde, ode = _purify("sde"), _purify("ode")
  assert abs(sde.mean() - ode.mean()) > 0.04 and sde.var() / ode.var() > 1.3


def test_ddpm_variance_option_and_ddim_eta_one_equals_ddpm():
  y_beta = _purify("ddpm", variance="beta")
  _, v = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, True)
  assert abs(y_beta.var() / float(v) - 1) < 0.015
  # DDIM with η = 1 is the DDPM posterior step: same key, same samples.
  np.testing.assert_allclose(_purify("ddim", eta=1.0), _purify("ddpm"), atol=1e-4)


def test_ode_euler_and_strided_ddim_close_to_exact():
  m, v = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, False)
  y = _purify("ode", solver="euler")
  assert abs(y.mean() - float(m)) < 0.005
  x = runtime_jit(lambda k: D.sample(EPS, SCHED, key=k, shape=SHAPE, sampler="ddim", num_steps=100))(
      jax.random.key(0))
  # 100 strided DDIM steps: the discretisation costs ~3% of the std on this problem.
  assert abs(float(x.mean()) - MU) < 0.01 and abs(float(x.std()) / S - 1) < 0.04


def test_one_step_equals_one_shot_denoise():
  x = jax.random.uniform(jax.random.key(2), (8, 4, 4, 1), minval=-1, maxval=1)
  key = jax.random.key(3)
  y = D.purify(EPS, SCHED, x, key=key, t_bar=75, sampler="ddpm", num_steps=1)
  k_fwd, _ = jax.random.split(key)
  xt = D.diffuse(SCHED, x, 75, k_fwd)
  np.testing.assert_allclose(y, D.one_step_denoise(EPS, SCHED, xt, 74), atol=1e-6)


def test_time_grid():
  np.testing.assert_array_equal(D.time_grid(74, None, True), np.arange(74, -1, -1))
  g = D.time_grid(999, 10, True)
  assert g[0] == 999 and g[-1] == 0 and len(g) == 10 and np.all(np.diff(g) < 0)
  with pytest.raises(ValueError):
    D.time_grid(10, 20, True)


@pytest.mark.parametrize("sampler", D.SAMPLERS)
def test_grad_through_purification_with_and_without_remat(sampler):
  eps = D.gaussian_eps_fn(SCHED, 0.0, 0.5)
  x = jax.random.uniform(jax.random.key(4), (2, 4, 4, 1), minval=-1, maxval=1)

  def loss(x, remat):
    y = D.purify(eps, SCHED, x, key=jax.random.key(5), t_bar=20, sampler=sampler, remat=remat)
    return jnp.sum(y ** 2)

  g = jax.jit(jax.grad(loss), static_argnums=1)(x, False)
  g_remat = jax.jit(jax.grad(loss), static_argnums=1)(x, True)
  np.testing.assert_allclose(g, g_remat, rtol=1e-5, atol=1e-6)
  # Linear-Gaussian model: d/dx of E‖y‖² is 2·gain·y; check against finite differences.
  d = jax.random.normal(jax.random.key(6), x.shape)
  h = 1e-2
  fd = (loss(x + h * d, False) - loss(x - h * d, False)) / (2 * h)
  np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=2e-2)


def test_batch_polymorphic_and_bad_inputs():
  for b in (1, 3):
    y = D.purify(EPS, SCHED, jnp.zeros((b, 2, 2, 1)), key=jax.random.key(0), t_bar=5, sampler="ddim")
    assert y.shape == (b, 2, 2, 1) and y.dtype == jnp.float32
  with pytest.raises(ValueError):
    D.purify(EPS, SCHED, jnp.zeros((1, 2, 2, 1)), key=jax.random.key(0), t_bar=0, sampler="ddpm")
  with pytest.raises(ValueError):
    D.sample(EPS, SCHED, key=jax.random.key(0), shape=(1, 2, 2, 1), sampler="euler")
  with pytest.raises(TypeError):
    D.sample(EPS, SCHED, key=jax.random.key(0), shape=(1, 2, 2, 1), sampler="sde", eta=0.5)


def test_eps_loss_zero_for_oracle_and_positive_otherwise():
  x0 = jnp.zeros((64, 4, 4, 1))
  # For x0 = 0, ε = x_t/√(1−ᾱ) exactly: the oracle has zero loss, a zero predictor loss ≈ 1.
  oracle = lambda xt, t: xt / jnp.sqrt(1 - SCHED.alpha_bar(t))[:, None, None, None]
  assert float(D.eps_loss(oracle, SCHED, x0, jax.random.key(0))) < 1e-8
  zero = lambda xt, t: jnp.zeros_like(xt)
  assert abs(float(D.eps_loss(zero, SCHED, x0, jax.random.key(0))) - 1) < 0.1


def test_step_coefficients_are_exact_where_float32_cancels():
  """The last steps of a full DDPM chain have β ≈ 1e-4, where 1 − ᾱ_a/ᾱ_b loses ~4 digits in float32: the
  posterior variances must equal β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) computed from the betas themselves."""
  from jaxdiff.diffusion.samplers import _coefficients
  betas = np.linspace(1e-4, 0.02, 1000)  # float64, independent of the schedule's arrays
  ac = np.cumprod(1 - betas)
  a, b = np.array([3.0, 2.0, 1.0]), np.array([2.0, 1.0, 0.0])
  c = _coefficients("ddpm", np.asarray(SCHED.alphas_cumprod), a, b, np)
  want = betas[[3, 2, 1]] * (1 - ac[[2, 1, 0]]) / (1 - ac[[3, 2, 1]])
  np.testing.assert_allclose(c["std"] ** 2, want, rtol=1e-9)
  c = _coefficients("ddpm", np.asarray(SCHED.alphas_cumprod), a, b, np, variance="beta")
  np.testing.assert_allclose(c["std"] ** 2, betas[[3, 2, 1]], rtol=1e-9)


def test_traced_start_index_equals_static_one():
  """Denoised smoothing at a traced σ runs the sampler from a traced t_start: same result as a static one."""
  x = jax.random.normal(jax.random.key(5), (8, 4, 4, 1))
  static = D.reverse(EPS, SCHED, x, key=jax.random.key(6), t_start=120, sampler="ddim", num_steps=5)
  traced = jax.jit(lambda t: D.reverse(EPS, SCHED, x, key=jax.random.key(6), t_start=t, sampler="ddim",
                                       num_steps=5))(jnp.float32(120))
  np.testing.assert_allclose(traced, static, rtol=1e-4, atol=1e-5)


def test_dpm_solver_pp_few_steps_close_to_exact():
  """DPM-Solver++(2M) is second order: 20 steps from T land near the data distribution (the last evaluation,
  at index ~50, returns E[x0 | x_t], which shrinks the std a little), far closer than first-order DDIM with
  the same 20 evaluations; purification from t̄ = 75 in 10 steps hits the transport map."""
  run = lambda s, k: np.asarray(runtime_jit(lambda key: D.sample(EPS, SCHED, key=key, shape=SHAPE, sampler=s,
                                                                   num_steps=k))(jax.random.key(0)))
  dpm, ddim = run("dpm_solver++", 20), run("ddim", 20)
  assert abs(dpm.mean() - MU) < 0.01 and abs(dpm.std() / S - 1) < 0.06
  assert abs(dpm.std() / S - 1) < 0.4 * abs(ddim.std() / S - 1)
  m, v = purified_moments(SCHED.alphas_cumprod[74], 0.8, MU, S, False)
  y = _purify("dpm_solver++", num_steps=10)
  assert abs(y.mean() - float(m)) < 0.005 and abs(y.var() / float(v) - 1) < 0.015


COSINE = D.cosine_schedule(4000)  # improved diffusion's CIFAR-10 schedule


@pytest.mark.parametrize("sampler", D.SAMPLERS)
def test_purification_matches_closed_form_on_cosine_4000(sampler):
  """The same closed form on the 4,000-step cosine schedule, t̄ = 300 (ᾱ ≈ 0.93, the noise level of t̄ = 75 of
  the linear 1,000-step schedule): every index and a 30-step respacing."""
  eps = D.gaussian_eps_fn(COSINE, MU, S)
  x = jnp.full(SHAPE, 0.8)
  m, v = purified_moments(COSINE.alphas_cumprod[299], 0.8, MU, S, STOCHASTIC[sampler])
  for num_steps, tol in ((None, 0.05 if sampler == "ddpm" else 0.015), (30, 0.1 if sampler == "ddpm" else 0.03)):
    f = runtime_jit(lambda k: D.purify(eps, COSINE, x, key=k, t_bar=300, sampler=sampler, num_steps=num_steps))
    y = np.asarray(f(jax.random.key(1)))
    assert abs(y.mean() - float(m)) < 0.005, (num_steps, y.mean(), m)
    assert abs(y.var() / float(v) - 1) < tol, (num_steps, y.var(), v)
