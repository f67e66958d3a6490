"""Gradients through the purifier on a tiny U-Net: full backprop (remat) vs finite differences; BPDA."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import attacks, diffusion
from jaxdiff.models import UNet, UNetConfig
from jaxdiff.robust import purified_logits_fn, purify_pixels

CFG = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2),
                      attention_resolutions=(4,), norm_num_groups=4, layers_per_block=1, dropout=0.0)
MODEL = UNet(CFG)
PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
EPS_FN = lambda x, t: MODEL.apply({"params": PARAMS}, x, t)
SCHED = diffusion.linear_schedule()
W = jax.random.normal(jax.random.key(1), (64, 3))
CLASSIFY = lambda x: x.reshape(x.shape[0], -1) @ W


# ddpm and ode in the fast tier (the ancestral and the deterministic family); the others with -m slow — every
# sampler's gradient is also checked with and without remat in tests/diffusion/test_samplers.py
@pytest.mark.parametrize("sampler", [s if s in ("ddpm", "ode") else pytest.param(s, marks=pytest.mark.slow)
                                     for s in diffusion.SAMPLERS])
def test_full_gradient_through_purification_matches_finite_differences(sampler):
  x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1), minval=0.2, maxval=0.8)
  key = jax.random.key(3)
  f = lambda z, remat: jnp.sum(CLASSIFY(purify_pixels(EPS_FN, SCHED, z, key, t_bar=30, sampler=sampler,
                                                      num_steps=6, remat=remat)) ** 2)
  g = jax.jit(jax.grad(f), static_argnums=1)(x, True)
  # remat changes XLA's fusion and summation order: fp32 round-off ~ 1e-7 × |g|max (≈ 40 here), so atol 1e-5
  np.testing.assert_allclose(g, jax.jit(jax.grad(f), static_argnums=1)(x, False), rtol=1e-4, atol=1e-5)
  d = jax.random.normal(jax.random.key(4), x.shape)
  h = 1e-3
  f_jit = jax.jit(f, static_argnums=1)  # one compilation for both evaluations
  fd = (f_jit(x + h * d, False) - f_jit(x - h * d, False)) / (2 * h)
  np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=3e-2)


def test_bpda_gradient_is_identity_backward():
  x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
  key = jax.random.key(3)
  fwd = purify_pixels(EPS_FN, SCHED, x, key, t_bar=10, sampler="ddim", num_steps=3, gradient="bpda")
  ref = purify_pixels(EPS_FN, SCHED, x, key, t_bar=10, sampler="ddim", num_steps=3)
  np.testing.assert_allclose(fwd, ref, atol=1e-6)
  v = jax.random.normal(jax.random.key(5), x.shape)
  g = jax.grad(lambda z: jnp.vdot(purify_pixels(EPS_FN, SCHED, z, key, t_bar=10, sampler="ddim", num_steps=3,
                                                gradient="bpda"), v))(x)
  np.testing.assert_allclose(g, v, atol=1e-6)


def test_pgd_through_stochastic_purifier_stays_in_ball():
  lf = purified_logits_fn(CLASSIFY, EPS_FN, SCHED, t_bar=10, sampler="ddpm", num_steps=2)
  x = jax.random.uniform(jax.random.key(6), (4, 8, 8, 1))
  y = jnp.argmax(CLASSIFY(x), 1)
  adv = attacks.pgd(lf, x, y, key=jax.random.key(7), eps=0.03, steps=3, eot=2, stochastic=True)
  assert float(jnp.max(jnp.abs(adv - x))) <= 0.03 + 1e-6 and not np.allclose(adv, x)


def test_reprojection_keeps_the_purified_image_near_its_input_and_passes_gradients():
  from jaxdiff.robust import Purifier
  x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 1))
  key = jax.random.key(6)
  plain = Purifier(MODEL, t_bar=40, sampler="ddim", num_steps=4)
  proj = plain.replace(reproject_eps=8 / 255)
  out, ref = proj(PARAMS, x, key), plain(PARAMS, x, key)
  assert float(jnp.max(jnp.abs(out - x))) <= 8 / 255 + 1e-6
  assert float(jnp.max(jnp.abs(ref - x))) > 8 / 255  # the projection did something
  inside = jnp.abs(ref - x) <= 8 / 255  # where the purifier stayed in the ball, x̂ is unchanged
  np.testing.assert_allclose(np.asarray(out)[np.asarray(inside)], np.asarray(ref)[np.asarray(inside)], atol=1e-6)
  np.testing.assert_allclose(plain.replace(reproject_eps=1.0)(PARAMS, x, key), ref, atol=1e-6)
  g = jax.grad(lambda z: jnp.sum(CLASSIFY(proj(PARAMS, z, key)) ** 2))(x)
  assert float(jnp.max(jnp.abs(g))) > 0  # attacks see the projection (identity where it clips)
