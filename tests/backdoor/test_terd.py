"""TERD: the reversed loss against a hand computation for each attack form, the KL statistic against a Monte Carlo
estimate, the input likelihood ratio against scipy, and the two-stage reversion recovering a planted trigger."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff.backdoor import terd
from jaxdiff.diffusion import make_schedule


def _linear_eps(x, t):  # a stand-in network: ε_θ(x, t) = 0.7 x + t/1000
  return 0.7 * x + (t / 1000.0).reshape((-1,) + (1,) * (x.ndim - 1))


@pytest.mark.parametrize("form,gamma", [("terd", 1.0), ("baddiffusion", 1.0), ("trojdiff", 0.6)])
def test_reversed_loss_is_the_hand_computation(form, gamma):
  sched = make_schedule("linear", 1000)
  ks = jax.random.split(jax.random.key(0), 4)
  x0, n1, n2 = (np.asarray(jax.random.normal(k, (3, 4, 4, 2))) for k in ks[:3])
  r = np.asarray(jax.random.normal(ks[3], (4, 4, 2)))
  t = np.array([995.0, 990.0, 999.0])
  got = float(terd.reversed_loss(_linear_eps, sched, x0, r, t, n1, n2, form=form, gamma=gamma))
  ab = np.asarray(sched.alphas_cumprod, np.float64)[t.astype(int)][:, None, None, None]
  a, c = np.sqrt(ab), np.sqrt(1 - ab)
  b = {"terd": np.ones_like(a), "baddiffusion": 1 - a, "trojdiff": 1 - a}[form]
  c = gamma * c if form == "trojdiff" else c
  want = 0.0
  for i in range(3):  # one example at a time, in float64
    x1 = a[i] * x0[i] + b[i] * r + c[i] * n1[i]
    x2 = a[i] * x0[i] + b[i] * r + c[i] * n2[i]
    e1, e2 = 0.7 * x1 + t[i] / 1000, 0.7 * x2 + t[i] / 1000
    want += 0.5 * np.sum(((n1[i] - e1) - (n2[i] - e2)) ** 2) / 3
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # the target's term (a_t x0, shared by both noisings) cancels for a network linear in x: x0 does not matter
  other = float(terd.reversed_loss(_linear_eps, sched, 5 * x0, r, t, n1, n2, form=form, gamma=gamma))
  np.testing.assert_allclose(other, got, rtol=1e-5)
  no_r = float(terd.reversed_loss(_linear_eps, sched, x0, 0 * r, t, n1, n2, form=form, gamma=gamma))
  np.testing.assert_allclose(float(terd.reversed_loss(_linear_eps, sched, x0, r, t, n1, n2, form=form, gamma=gamma,
                                                      with_trigger=False)), no_r, rtol=1e-6)


def test_kl_statistic_is_the_gaussian_kl():
  rng = np.random.default_rng(0)
  mu, sigma = np.array([0.0, 0.5, -1.2, 2.0]), np.array([1.0, 0.8, 1.5, 1.0])
  x = rng.normal(mu, sigma, (400_000, 4))  # KL(p ‖ q) = E_p[log p − log q]
  mc = np.mean(stats.norm.logpdf(x, mu, sigma) - stats.norm.logpdf(x), axis=0)
  np.testing.assert_allclose(np.asarray(terd.gaussian_kl(mu, sigma)), mc, atol=0.01)
  s = terd.kl_statistics(jnp.asarray([0.0, 1.0, 2.0]))  # σ = 1: μ²/2 per dimension
  assert s["kl_mean"] == pytest.approx(np.mean([0, 0.5, 2])) and s["kl_var"] == pytest.approx(np.var([0, 0.5, 2]))


def test_input_likelihood_ratio_against_scipy():
  rng = np.random.default_rng(1)
  x, mu = rng.normal(size=(5, 3, 3, 1)), rng.normal(size=(3, 3, 1))
  want = (stats.norm.logpdf(x, mu, 1.3) - stats.norm.logpdf(x)).reshape(5, -1).sum(1)
  np.testing.assert_allclose(np.asarray(terd.input_log_likelihood_ratio(x, mu, 1.3)), want, rtol=1e-5)


def _planted(r_star, k=1.0):
  """A stand-in model whose reversed loss is least at r = r_star: ε_θ(x) = x + k·g(x − r*), g(u) = u − tanh u
  (flat at 0, steep away from it), so two noisings of x_T + r differ least when r = r*."""
  return lambda params, x, t: x + k * ((x - r_star) - jnp.tanh(x - r_star))


def test_reversion_recovers_a_planted_trigger_and_leaves_a_clean_model_near_zero():
  sched = make_schedule("linear", 1000)
  shape = (6, 6, 1)
  r_star = jnp.full(shape, 0.0).at[:3, :3].set(-1.5).at[3:, 3:].set(1.5)
  sample = lambda params, noise, r, key: jnp.clip((noise + r + 1) / 2, 0, 1)  # differentiable in r
  out = {}
  for name, planted in (("backdoored", r_star), ("clean", jnp.zeros(shape))):
    out[name] = terd.terd_invert(None, shape, jax.random.key(0), eps_fn=_planted(planted), schedule=sched,
                                 sample_fn=sample, iterations=300, refine_iterations=10, batch=16, lr=0.2)
  r = out["backdoored"]["trigger"]
  cos = float(np.sum(r * r_star) / np.linalg.norm(r) / np.linalg.norm(r_star))
  assert cos > 0.95 and np.abs(r - r_star).max() < 0.3, (cos, r[..., 0])
  assert np.abs(out["clean"]["trigger"]).max() < 0.3
  # model detection: the KL mean is about mean(r*²)/2 = 0.5 for the backdoored model, near 0 for the clean one
  assert out["backdoored"]["kl_mean"] > 0.35 > 0.05 > out["clean"]["kl_mean"]
  assert out["backdoored"]["estimation_loss"].shape == (300,) and out["backdoored"]["refinement_loss"].shape == (10,)


def test_a_diverging_reversion_is_an_error_not_a_clean_verdict():
  sched = make_schedule("linear", 1000)
  blow_up = lambda params, x, t: jnp.exp(50 * x)  # overflows: the loss and r become non-finite
  with pytest.raises(FloatingPointError, match="not finite; lower the learning rate"):
    terd.terd_invert(None, (4, 4, 1), jax.random.key(0), eps_fn=blow_up, schedule=sched,
                     sample_fn=lambda p, n, r, k: jnp.clip((n + r + 1) / 2, 0, 1), iterations=3, refine_iterations=0)
