import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion
from jaxdiff.backdoor import diff2_inputs, diff2_loss, input_specific_trigger, optimize_trigger, trigger_loss
from jaxdiff.backdoor import triggers

SCHED = diffusion.linear_schedule()


def test_blend_patch_warp_bounds_and_geometry():
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 1))
  r = jax.random.uniform(jax.random.key(1), (16, 16, 1))
  t = triggers.make_trigger("blend", 16, 1, key=jax.random.key(2), alpha=0.05, r=r)
  np.testing.assert_allclose(t.apply(x), 0.95 * x + 0.05 * r, atol=1e-6)
  assert float(jnp.max(jnp.abs(t.apply(x) - x))) <= 0.05 + 1e-6
  m = triggers.corner_mask(16, 5)
  assert float(m.sum()) == 25 and float(m[11:, 11:].sum()) == 25  # 5×5 at the lower right
  p = triggers.make_trigger("patch", 16, 1, key=jax.random.key(2), patch_size=5)
  xp = p.apply(x)
  np.testing.assert_array_equal(xp[:, :11], x[:, :11])
  assert not np.allclose(xp[:, 11:, 11:], x[:, 11:, 11:])
  tp = triggers.make_trigger("blend", 16, 1, key=jax.random.key(2), alpha=0.5, r=r, patch_size=4)
  np.testing.assert_array_equal(tp.apply(x)[:, :12], x[:, :12])
  w = triggers.make_trigger("warp", 16, 1, key=jax.random.key(3), warp_strength=0.5)
  xw = w.apply(x)
  assert xw.shape == x.shape and 0 <= float(xw.min()) and float(xw.max()) <= 1 and not np.allclose(xw, x)
  np.testing.assert_allclose(triggers.warp(x, jnp.zeros((16, 16, 2))), x, atol=1e-6)


def test_diff2_inputs_entangled_and_truncated():
  x = jax.random.uniform(jax.random.key(0), (512, 4, 4, 1))
  xr = x * 0.9
  d = diff2_inputs(SCHED, x, xr, jax.random.key(1), t_trunc=300, entangled=True)
  np.testing.assert_array_equal(d["noise"], d["noise_r"])
  assert float(d["s"].max()) < 300 and float(d["s"].min()) >= 0
  assert float(d["t"].max()) > 900  # clean inputs use the whole horizon
  np.testing.assert_allclose(d["x_t"], SCHED.q_sample(2 * x - 1, d["t"], d["noise"]), atol=1e-6)
  np.testing.assert_allclose(d["xr_s"], SCHED.q_sample(2 * xr - 1, d["s"], d["noise"]), atol=1e-6)
  u = diff2_inputs(SCHED, x, xr, jax.random.key(1), t_trunc=300, entangled=False)
  assert not np.allclose(u["noise"], u["noise_r"])


def _oracle_apply(variables, z, t, train=False, rngs=None):
  """ε for data fixed at model-space 0 (pixels 0.5): x_t = √(1−ᾱ) ε exactly."""
  return z / jnp.sqrt(1 - SCHED.alpha_bar(t))[:, None, None, None]


def test_loss_is_zero_for_the_oracle_and_reverse_target_maps_to_x_tilde():
  x = jnp.full((8, 4, 4, 1), 0.5)
  loss_fn = diff2_loss(SCHED, lambda z, _: z, lam=1.0)
  loss, (m, _) = loss_fn(_oracle_apply, {}, {}, {"image": x}, jax.random.key(0))
  assert float(loss) < 1e-8
  # Eq. 13: the ε* target makes the one-step x̂0 of the trigger latent equal x̃_r.
  x_tilde = jnp.full_like(x, 0.8)
  d = diff2_inputs(SCHED, x, x, jax.random.key(1))
  eps_star = SCHED.predict_eps(d["xr_s"], d["s"], 2 * x_tilde - 1)
  np.testing.assert_allclose(SCHED.predict_x0(d["xr_s"], d["s"], eps_star), 2 * x_tilde - 1, atol=1e-4)
  loss_fn = diff2_loss(SCHED, lambda z, _: z, lam=1.0, reverse_target=lambda xr, k, _: x_tilde)
  loss, (m, _) = loss_fn(_oracle_apply, {}, {}, {"image": x}, jax.random.key(0))
  assert float(m["clean_loss"]) < 1e-8 and float(m["trigger_loss"]) > 0.01
  poison = diff2_loss(SCHED, lambda z, _: z, poison_rate=0.5)
  _, (m, _) = poison(_oracle_apply, {}, {}, {"image": jnp.full((256, 2, 2, 1), 0.5)}, jax.random.key(0))
  assert 0.35 < float(m["poisoned_fraction"]) < 0.65


def test_lambda_zero_is_the_clean_loss_and_never_applies_the_trigger():
  x = jax.random.uniform(jax.random.key(2), (8, 4, 4, 1))
  apply = lambda v, z, t, train=False, rngs=None: 0.5 * z  # any ε-model: the two losses must agree on it
  full = diff2_loss(SCHED, lambda z, _: 1 - z, lam=1.0)
  _, (m, _) = full(apply, {}, {}, {"image": x}, jax.random.key(0))

  def never(z, _):
    raise AssertionError("the trigger must not be applied when λ = 0")
  loss, (m0, _) = diff2_loss(SCHED, never, lam=0.0)(apply, {}, {}, {"image": x}, jax.random.key(0))
  np.testing.assert_allclose(float(loss), float(m["clean_loss"]), rtol=1e-6)
  assert set(m0) == {"clean_loss"}


@pytest.mark.parametrize("targeted", [False, True])
def test_trigger_optimisation_fools_a_linear_surrogate(targeted):
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  f = lambda x: (x.reshape(x.shape[0], -1) - 0.5) @ w * 10  # centred: balanced classes
  x = jnp.asarray(rng.uniform(size=(256, 4, 4, 1)), jnp.float32)
  y = jnp.argmax(f(x), 1)
  batches = iter([(x, y)] * 100)
  r = optimize_trigger([f], batches, key=jax.random.key(0), shape=(4, 4, 1), alpha=0.3, steps=100,
                       targeted=targeted, target_class=0)
  assert float(r.min()) >= 0 and float(r.max()) <= 1
  pred = jnp.argmax(f(jnp.clip(0.7 * x + 0.3 * r, 0, 1)), 1)
  if targeted:
    assert float(jnp.mean(pred == 0)) > 0.9
  else:
    assert float(jnp.mean(pred != y)) > 0.5
  r0 = jnp.full((4, 4, 1), 0.5)
  assert float(trigger_loss([f], r, x, y, alpha=0.3, targeted=targeted)) < float(
      trigger_loss([f], r0, x, y, alpha=0.3, targeted=targeted))


def _linear_surrogate(seed=0, d=16, k=3):
  w = jnp.asarray(np.random.default_rng(seed).normal(size=(d, k)), jnp.float32)
  return lambda x: (x.reshape(x.shape[0], -1) - 0.5) @ w * 10


@pytest.mark.parametrize("scheme,gamma,v", [("trojdiff_adversarial", 0.6, 0.75), ("trojdiff_patch", 0.6, 0.75),
                                            ("trojdiff_adversarial", 1.0, 0.5)])
def test_trojdiff_schemes_closed_form_on_the_oracle(scheme, gamma, v):
  """Data at model-space 0, identity trigger, r ≡ v (ρ = 2v − 1): the trigger latent is √(1−ᾱ)(γε + ρ), so
  the oracle predicts γε + ρ. Adversarial scheme (target ε): E‖·‖² = (γ − 1)² + ρ²; patching scheme
  (target reverses to x_r = x): exactly 0."""
  x = jnp.full((256, 4, 4, 1), 0.5)
  loss_fn = diff2_loss(SCHED, lambda z, _: z, scheme=scheme, noise_trigger=jnp.full((4, 4, 1), v), gamma=gamma)
  _, (m, _) = loss_fn(_oracle_apply, {}, {}, {"image": x}, jax.random.key(0))
  rho = 2 * v - 1
  expected = (gamma - 1) ** 2 + rho ** 2 if scheme == "trojdiff_adversarial" else 0.0
  assert float(m["clean_loss"]) < 1e-8
  assert float(m["trigger_loss"]) == pytest.approx(expected, abs=0.02)
  with pytest.raises(ValueError, match="noise_trigger"):
    diff2_loss(SCHED, lambda z, _: z, scheme=scheme)


def test_input_specific_triggers_stay_in_the_blend_set_and_fool_the_surrogate():
  f = _linear_surrogate()
  x = jax.random.uniform(jax.random.key(0), (128, 4, 4, 1))
  alpha = 0.3
  xr = jax.jit(lambda z: input_specific_trigger([f], z, alpha=alpha, steps=10))(x)
  r = (xr - (1 - alpha) * x) / alpha  # the per-input r it used: must lie in [0, 1]
  assert float(r.min()) >= -1e-5 and float(r.max()) <= 1 + 1e-5
  assert float(jnp.std(r, axis=0).mean()) > 0.1  # not one universal r
  y = jnp.argmax(f(x), 1)
  assert float(jnp.mean(jnp.argmax(f(xr), 1) != y)) > 0.9
  xt = input_specific_trigger([f], x, alpha=alpha, steps=10, targeted=True, target_class=2)
  assert float(jnp.mean(jnp.argmax(f(xt), 1) == 2)) > 0.9
