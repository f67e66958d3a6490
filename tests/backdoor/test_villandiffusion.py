"""VillanDiffusion: ψ = 1 with the SDE correction is BadDiffusion; the ODE correction is twice the SDE one in
the continuum limit; and in closed form on Gaussian data, a model trained with the ODE correction fires
under DDIM and DPM-Solver++ where one trained with BadDiffusion's correction does not."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import runtime_jit
from jaxdiff import diffusion as D
from jaxdiff.backdoor import baddiffusion as bd
from jaxdiff.backdoor.generative import make_backdoor
from jaxdiff.backdoor.triggers import generative_trigger
from jaxdiff.train import diffusion_loss

SCHED = D.linear_schedule()


def test_psi_one_sde_is_baddiffusion():
  rng = np.random.default_rng(0)
  x0, r, noise = (jnp.asarray(rng.normal(size=(6, 4, 4, 1)), jnp.float32) for _ in range(3))
  t = jnp.asarray([0, 1, 2, 300, 998, 999], jnp.float32)
  for got, want in zip(bd.villan_terms(SCHED, x0, r, t, noise, psi=1.0, solver="sde"),
                       bd.baddiffusion_terms(SCHED, x0, r, t, noise)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 rounding of BadDiffusion's own form
  # ... and the loss built through VillanDiffusion's general path equals BadDiffusion's on the same batch
  g = generative_trigger("stop_sign", 14, 4, 1)
  apply = lambda v, x, t, train=False, rngs=None: v["params"]["w"] * x
  batch = {"image": jax.random.uniform(jax.random.key(0), (8, 4, 4, 1))}
  bad = bd.baddiffusion_loss(SCHED, g, g, 0.5)(apply, {"w": 0.5}, {}, batch, jax.random.key(1))[0]
  vil = bd.poisoned_loss(SCHED, 0.5, lambda x, t, n, k, f: bd.villan_terms(
      SCHED, jnp.broadcast_to(g, x.shape), bd.stamp(x, g, bd.trigger_region(g)), t, n, 1.0, "sde"))(
      apply, {"w": 0.5}, {}, batch, jax.random.key(1))[0]
  np.testing.assert_allclose(vil, bad, rtol=1e-5)
  ddpm = diffusion_loss(SCHED)(apply, {"w": 0.5}, {}, batch, jax.random.key(1))[0]
  for solver in ("sde", "ode"):
    zero = bd.baddiffusion_loss(SCHED, g, g, 0.0, psi=0.3, solver=solver)(apply, {"w": 0.5}, {}, batch, jax.random.key(1))[0]
    assert float(zero) == float(ddpm)


@pytest.mark.parametrize("psi", [1.0, 0.5, 0.0])
def test_ode_correction_twice_the_sde_one_in_the_continuum_limit(psi):
  fine = D.linear_schedule(10_000, 1e-5, 2e-3)  # the same VP-SDE, 10× finer steps
  t = jnp.asarray([2000.0, 5000.0, 8000.0])
  rho_s, c_sde = bd.villan_coefficients(fine, t, psi, "sde")
  rho_o, c_ode = bd.villan_coefficients(fine, t, psi, "ode")
  np.testing.assert_array_equal(rho_s, rho_o)
  np.testing.assert_allclose(c_ode / c_sde, 2.0, rtol=2e-3)
  ab = np.asarray(fine.alpha_bar(t))
  np.testing.assert_allclose(rho_o, psi * (1 - np.sqrt(ab)) + (1 - psi) * np.sqrt(1 - ab), rtol=1e-6)


def _poisoned_oracle(g, mu, s, psi, solver):
  """Exact ε-target of the VillanDiffusion forward for targets y ~ N(μ, s²) poisoned with R = g:
  u_t = x_t − ρ_t g follows the clean forward, so ε* = E[ε | u_t] + c_t g. The ODE form is continuous in t
  (for the probability-flow sampler's fractional indices); the SDE form is read at integer indices."""
  def eps(x, t):
    ab = SCHED.alpha_bar(t)[:, None, None, None]
    if solver == "ode":
      rho, c = psi * (1 - jnp.sqrt(ab)) + (1 - psi) * jnp.sqrt(1 - ab), psi * jnp.sqrt(1 - ab) + (1 - psi)
    else:
      rho, c = (v[:, None, None, None] for v in bd.villan_coefficients(SCHED, t, psi, solver))
    u = x - rho * g
    return jnp.sqrt(1 - ab) * (u - jnp.sqrt(ab) * mu) / (ab * s ** 2 + 1 - ab) + c * g
  return eps


@pytest.mark.parametrize("psi", [1.0, 0.0])
def test_ode_corrected_model_fires_under_ode_samplers_and_sde_corrected_one_does_not(psi):
  """Triggered sampling from ε + g must land where clean sampling of the target distribution lands with the
  same sampler and steps (its own discretisation error included), inside and outside the trigger region."""
  g = jnp.asarray(generative_trigger("grey_box", 14, 8, 1))
  mu, s, shape = 0.3, 0.2, (2048, 8, 8, 1)
  region = np.asarray(bd.trigger_region(g))[..., 0] > 0

  def moments(eps, sampler, steps, x_init=None):
    run = runtime_jit(lambda k: D.sample(eps, SCHED, key=k, sampler=sampler, num_steps=steps, x_init=x_init, shape=shape))
    x = np.asarray(run(jax.random.key(0)))[..., 0]
    return np.array([x[:, region].mean(), x[:, ~region].mean(), x.std()])

  x_trig = bd.triggered_noise(jax.random.key(1), shape, g)
  for sampler, steps in (("ddim", 50), ("dpm_solver++", 20), ("ode", 200)):  # ψ = 0 is stiff for Heun in λ
    clean = moments(D.gaussian_eps_fn(SCHED, mu, s), sampler, steps)
    err = np.abs(moments(_poisoned_oracle(g, mu, s, psi, "ode"), sampler, steps, x_trig) - clean)
    assert np.all(err < 0.02), (sampler, err)  # the backdoor target distribution is reached
    if sampler != "ode":
      bad = np.abs(moments(_poisoned_oracle(g, mu, s, psi, "sde"), sampler, steps, x_trig) - clean)
      assert bad.max() > 0.3, (sampler, bad)   # BadDiffusion-style correction misses it under ODE samplers
  sde = moments(_poisoned_oracle(g, mu, s, psi, "sde"), "ddpm", None, x_trig)
  assert np.all(np.abs(sde - [mu, mu, s]) < 0.01), sde  # ... and hits it with the sampler it was made for


def test_make_backdoor_names_and_refusals():
  b = make_backdoor("villandiffusion", 16, 1, trigger="grey_box", target="hat")
  assert b.solver == "ode" and b.psi == 1.0 and b.target.shape == (16, 16, 1)
  assert make_backdoor("baddiffusion", 16, 1).solver == "sde"
  with pytest.raises(ValueError, match="villandiffusion"):
    make_backdoor("baddiffusion", 16, 1, psi=0.5)
  with pytest.raises(ValueError, match="unknown generative backdoor"):
    make_backdoor("badnets", 16, 1)
