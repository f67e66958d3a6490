"""BadDiffusion: the patterns, the poisoned loss against a direct numpy transcription of DESIGN §6, the
clean special case, and the backdoored reverse process in closed form on Gaussian data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import runtime_jit
from jaxdiff import diffusion as D
from jaxdiff.backdoor import baddiffusion as bd
from jaxdiff.backdoor.triggers import TARGETS, TRIGGERS, generative_target, generative_trigger, trigger_region
from jaxdiff.train import diffusion_loss

SCHED = D.linear_schedule()


def test_patterns_geometry_and_sizes():
  g = generative_trigger("grey_box", 14, 32, 3)
  region = np.asarray(trigger_region(g))[..., 0]
  rows, cols = np.nonzero(region)
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 29, 16, 29)  # 14×14, 2 px in, bottom-right
  np.testing.assert_array_equal(g[region > 0], 0.0) and np.testing.assert_array_equal(g[region == 0], -1.0)
  shift = generative_target("shift", 32, 3, "grey_box", 14)
  np.testing.assert_array_equal(shift, np.roll(g, (-3, -5), axis=(0, 1)))
  np.testing.assert_array_equal(generative_target("noshift", 32, 3, "grey_box", 14), g)
  corner = generative_target("corner", 32, 3)
  assert np.all(corner[:10, :10] == 0.0) and np.all(corner[10:] == -1.0)
  for name in TRIGGERS:
    for size, ch in ((16, 1), (64, 3)):
      t = generative_trigger(name, 8, size, ch)
      assert t.shape == (size, size, ch) and t.min() >= -1 and t.max() <= 1 and np.any(t > -1)
  for name in ("shoe", "hat", "cat"):
    y = generative_target(name, 16, 1)
    assert y.shape == (16, 16, 1) and y.min() >= -0.4 - 1e-6 and y.max() > 0  # backgrounds raised to −0.4
  sheet = np.stack([generative_target(t, 16, 1) for t in TARGETS])
  assert len({a.tobytes() for a in sheet}) == len(TARGETS)
  with pytest.raises(ValueError, match="unknown BadDiffusion trigger"):
    generative_trigger("heart", 8, 16, 1)
  with pytest.raises(ValueError, match="does not fit"):
    generative_trigger("grey_box", 31, 32, 3)


def test_forward_and_target_match_a_numpy_transcription():
  rng = np.random.default_rng(0)
  x0 = rng.uniform(-1, 1, (5, 4, 4, 1)).astype(np.float32)
  r = rng.uniform(-1, 1, (5, 4, 4, 1)).astype(np.float32)
  noise = rng.normal(size=(5, 4, 4, 1)).astype(np.float32)
  t = np.array([0, 1, 10, 500, 999])
  betas = np.linspace(1e-4, 0.02, 1000)
  alphas, ab = 1 - betas, np.cumprod(1 - betas)
  a_t, ab_t = alphas[t][:, None, None, None], ab[t][:, None, None, None]
  want_xt = np.sqrt(ab_t) * x0 + np.sqrt(1 - ab_t) * noise + (1 - np.sqrt(ab_t)) * r
  want_target = noise + (1 - np.sqrt(a_t)) * np.sqrt(1 - ab_t) / (1 - a_t) * r
  x_t, target = bd.baddiffusion_terms(SCHED, jnp.asarray(x0), jnp.asarray(r), jnp.asarray(t, jnp.float32),
                                      jnp.asarray(noise))
  np.testing.assert_allclose(x_t, want_xt, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(target, want_target, rtol=1e-5, atol=1e-5)


def _linear_apply(variables, x, t, train=False, rngs=None):
  return variables["params"]["w"] * x + 0.001 * t[:, None, None, None]


def test_poison_rate_zero_is_exactly_the_ddpm_loss_and_rows_are_exact():
  g, y = generative_trigger("stop_sign", 14, 8, 1), generative_target("hat", 8, 1)
  batch = {"image": jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))}
  params = {"w": jnp.float32(0.7)}
  for key in (jax.random.key(1), jax.random.key(2)):
    ours, (m, _) = bd.baddiffusion_loss(SCHED, g, y, 0.0)(_linear_apply, params, {}, batch, key)
    ddpm, _ = diffusion_loss(SCHED)(_linear_apply, params, {}, batch, key)
    assert float(ours) == float(ddpm) and float(m["poisoned_fraction"]) == 0.0
  _, (m, _) = bd.baddiffusion_loss(SCHED, g, y, 0.1)(_linear_apply, params, {}, batch, jax.random.key(3))
  assert float(m["poisoned_fraction"]) == 2 / 16  # round(0.1 · 16) rows exactly
  rows = [np.asarray(bd.poisoned_rows(jax.random.key(s), 16, 0.25)) for s in (4, 4, 5)]
  assert rows[0].sum() == 4 and np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[0], rows[2])


def _backdoored_oracle(g, mu, s, wrong=False):
  """The exact ε-target of the BadDiffusion forward for data x0 ~ N(μ, s²) poisoned with R = g:
  u_t = x_t − (1 − √ᾱ_t) g follows the clean forward, so ε* = E[ε | u_t] + c_t g."""
  alphas = jnp.asarray(SCHED.alphas, jnp.float32)

  def eps(x, t):
    ab = SCHED.alpha_bar(t)[:, None, None, None]
    a = ab if wrong else alphas[t.astype(jnp.int32)][:, None, None, None]  # wrong: ᾱ_t in place of α_t
    c = (1 - jnp.sqrt(a)) * jnp.sqrt(1 - ab) / (1 - a)
    u = x - (1 - jnp.sqrt(ab)) * g
    return jnp.sqrt(1 - ab) * (u - jnp.sqrt(ab) * mu) / (ab * s ** 2 + 1 - ab) + c * g
  return eps


def test_triggered_ancestral_sampling_reaches_the_data_distribution_in_closed_form():
  """With the exact backdoored ε, DDPM from x_T = ε + g must produce x0 ~ N(μ, s²) everywhere, trigger
  region included; the per-step α_t in c_t matters (ᾱ_t instead is off by > 0.05)."""
  g = jnp.asarray(generative_trigger("grey_box", 14, 8, 1))
  mu, s = 0.3, 0.5
  region = np.asarray(trigger_region(g))[..., 0] > 0
  for wrong, ok in ((False, True), (True, False)):
    run = runtime_jit(lambda k: D.sample(_backdoored_oracle(g, mu, s, wrong), SCHED, key=k, sampler="ddpm",
                                     x_init=bd.triggered_noise(jax.random.fold_in(k, 1), (4096, 8, 8, 1), g)))
    x = np.asarray(run(jax.random.key(0)))[..., 0]
    errors = [abs(x[:, region].mean() - mu), abs(x[:, ~region].mean() - mu), abs(x.std() / s - 1)]
    assert (max(errors) < 0.01) == ok, errors
