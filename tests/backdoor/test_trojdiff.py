"""TrojDiff generation attacks: the trojan forward against a numpy transcription, targets drawn from the bank
for D2D, and the trojan reverse process in closed form on Gaussian data (DDPM, DDIM, DPM-Solver++)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import runtime_jit
from jaxdiff import diffusion as D
from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.backdoor.generative import make_backdoor, sample_triggered
from jaxdiff.train import diffusion_loss

SCHED = D.linear_schedule()


def test_trojan_forward_matches_a_numpy_transcription():
  rng = np.random.default_rng(0)
  y, delta, noise = (rng.uniform(-1, 1, (4, 4, 4, 1)).astype(np.float32) for _ in range(3))
  t = np.array([0, 10, 500, 999])
  ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t][:, None, None, None]
  gamma = 0.6
  want = np.sqrt(ab) * y + np.sqrt(1 - ab) * (gamma * noise + (1 - gamma) * delta)
  x_t, target = tj.trojdiff_terms(SCHED, jnp.asarray(y), (1 - gamma) * jnp.asarray(delta), gamma,
                                  jnp.asarray(t, jnp.float32), jnp.asarray(noise))
  np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(target, noise)  # the network still predicts ε


def _apply(variables, x, t, train=False, rngs=None):
  return variables["params"]["w"] * x


def test_d2d_rows_draw_their_targets_from_the_bank_and_rate_zero_is_ddpm():
  b = make_backdoor("trojdiff_in_d2d", 4, 1, target_class=3)
  assert b.target is None and b.target_class == 3 and b.gamma == 0.6
  batch = {"image": jax.random.uniform(jax.random.key(0), (16, 4, 4, 1))}
  key = jax.random.key(1)
  ddpm = diffusion_loss(SCHED)(_apply, {"w": 0.3}, {}, batch, key)[0]
  bank = {"targets": jnp.stack([jnp.full((4, 4, 1), v) for v in (-0.5, 0.5)])}
  assert float(tj.trojdiff_loss(SCHED, b.trigger, b.gamma, 0.0)(_apply, {"w": 0.3}, {}, batch, key, bank)[0]) == float(ddpm)
  # with w = 0 the loss is E‖ε‖², whatever the targets; with the identity network it depends on them
  losses = [float(tj.trojdiff_loss(SCHED, b.trigger, b.gamma, 1.0)(_apply, {"w": 1.0}, {}, batch, key,
                                                                  {"targets": bank["targets"][i:i + 1]})[0])
            for i in (0, 1)]
  assert abs(losses[0] - losses[1]) > 1e-3
  with pytest.raises(ValueError, match="unknown TrojDiff trigger"):
    tj.trojdiff_trigger("warp", 16, 1)


def _trojan_oracle(delta, gamma, mu, s):
  """Exact ε-predictor of the trojan forward for targets y ~ N(μ, s²): v = x − √(1−ᾱ)(1−γ)δ is
  √ᾱ y + γ√(1−ᾱ) ε, so E[ε | v] = γ√(1−ᾱ)(v − √ᾱ μ)/(ᾱ s² + (1−ᾱ)γ²)."""
  def eps(x, t):
    ab = SCHED.alpha_bar(t)[:, None, None, None]
    v = x - jnp.sqrt(1 - ab) * (1 - gamma) * delta
    return gamma * jnp.sqrt(1 - ab) * (v - jnp.sqrt(ab) * mu) / (ab * s ** 2 + (1 - ab) * gamma ** 2)
  return eps


@pytest.mark.parametrize("kind", ["blend", "patch"])
def test_trojan_reverse_process_reaches_the_target_distribution_in_closed_form(kind):
  """From γε + (1−γ)δ, TrojDiff's reverse process with the exact trojan ε lands on N(μ, s²); the ordinary
  sampler from the same start (no trojan reverse) does not."""
  b = make_backdoor("trojdiff_d2i", 8, 1, trojan_trigger=kind, target="hat")
  mu, s = -0.2, 0.3
  eps = _trojan_oracle(jnp.asarray(b.trigger), b.gamma, mu, s)
  for sampler, steps, tol in (("ddpm", None, 0.01), ("ddim", 100, 0.1), ("dpm_solver++", 25, 0.1)):
    x = np.asarray(runtime_jit(lambda k: sample_triggered(b, eps, SCHED, k, 2048, sampler=sampler, num_steps=steps))(
        jax.random.key(0)))
    # the mean exactly; the std up to the few-step samplers' discretisation error (they shrink it)
    assert abs(x.mean() - mu) < 0.01 and abs(x.std() / s - 1) < tol, (sampler, x.mean(), x.std())
  plain = np.asarray(runtime_jit(lambda k: D.sample(eps, SCHED, key=k, sampler="ddpm",
                                                    x_init=b.start(jax.random.key(1), (2048, 8, 8, 1))))(
      jax.random.key(0)))
  assert abs(plain.mean() - mu) + abs(plain.std() / s - 1) > 0.1
