"""DDPM and DDIM step for step against diffusers' DDPMScheduler / DDIMScheduler on a toy ε-model, for each of
diffusers' timestep spacings, with the same schedule and the same Gaussian draws."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # test extra
diffusers = pytest.importorskip("diffusers")

from jaxdiff import diffusion as D  # noqa: E402

SHAPE = (3, 4, 4, 2)


AC = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.numpy()
MU, S = 0.3, 0.5


def _toy_eps(x, ab, lib):
  """The exact ε-predictor of Gaussian data N(μ, s²) plus a nonlinear term: samples stay O(1), every step
  matters (elementwise, so NHWC/NCHW does not matter)."""
  return lib.sqrt(1 - ab) * (x - lib.sqrt(ab) * MU) / (ab * S ** 2 + 1 - ab) + 0.05 * lib.tanh(3 * x)


def _jax_eps(x, t):
  return _toy_eps(x, jnp.asarray(AC)[t.astype(jnp.int32)][:, None, None, None], jnp)


def _rel_err(got, want):
  return float(np.linalg.norm(np.asarray(got) - want) / np.linalg.norm(want))


def _schedule(sched):
  """Our Schedule with diffusers' own float32 betas and ᾱ (the test isolates the sampler)."""
  return D.Schedule(betas=jnp.asarray(sched.betas.numpy()), alphas_cumprod=jnp.asarray(sched.alphas_cumprod.numpy()))


def _our_draws(key, k):
  """x_T and the step noises z_0 … z_{K−2} exactly as ``diffusion.sample`` draws them."""
  k_init, k_rev = jax.random.split(key)
  x_t = jax.random.normal(k_init, SHAPE, jnp.float32)
  zs = []
  for _ in range(k - 1):
    k_rev, sub = jax.random.split(k_rev)
    zs.append(np.asarray(jax.random.normal(sub, SHAPE, jnp.float32)))
  return np.asarray(x_t), zs


def _run_diffusers(sched, x_t, zs, step_kw):
  x = torch.tensor(x_t)
  for i, t in enumerate(sched.timesteps):
    eps = _toy_eps(x, torch.tensor(AC[int(t)]), torch)
    z = torch.tensor(zs[i]) if i < len(zs) else torch.zeros(SHAPE)
    x = sched.step(eps, t, x, **step_kw(z)).prev_sample
  return x.numpy()


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(spacing, eta):
  k = 50
  ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                set_alpha_to_one=True, timestep_spacing=spacing, steps_offset=0)
  ref.set_timesteps(k)
  x_t, zs = _our_draws(jax.random.key(0), k)
  want = _run_diffusers(ref, x_t, zs, lambda z: dict(eta=eta, variance_noise=z))
  got = D.sample(_jax_eps, _schedule(ref), key=jax.random.key(0), shape=SHAPE, sampler="ddim", num_steps=k,
                 timestep_spacing=spacing, eta=eta)
  a, b = D.timestep_pairs(999, k, True, spacing, stride_target=True)
  np.testing.assert_array_equal(a, ref.timesteps.numpy())  # the same grid ...
  np.testing.assert_array_equal(b[:-1], a[:-1] - 1000 // k)
  assert _rel_err(got, want) < 1e-5  # ... and the same chain


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ddpm_matches_diffusers(spacing, variance, monkeypatch):
  k = 40
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                timestep_spacing=spacing, steps_offset=0,
                                variance_type="fixed_small" if variance == "posterior" else "fixed_large")
  ref.set_timesteps(k)
  x_t, zs = _our_draws(jax.random.key(1), k)
  draws = iter([torch.tensor(z) for z in zs])
  from diffusers.schedulers import scheduling_ddpm
  monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kw: next(draws, torch.zeros(shape)))
  want = _run_diffusers(ref, x_t, zs, lambda z: {})
  got = D.sample(_jax_eps, _schedule(ref), key=jax.random.key(1), shape=SHAPE, sampler="ddpm", num_steps=k,
                 timestep_spacing=spacing, variance=variance)
  assert _rel_err(got, want) < 1e-5


def test_full_chain_ddpm_matches_diffusers_including_the_last_step(monkeypatch):
  """Every index (the default grid), where the last steps' variances β̃ are tiny: float64 coefficients."""
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
  ref.set_timesteps(1000)
  x_t, zs = _our_draws(jax.random.key(2), 1000)
  draws = iter([torch.tensor(z) for z in zs])
  from diffusers.schedulers import scheduling_ddpm
  monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kw: next(draws, torch.zeros(shape)))
  want = _run_diffusers(ref, x_t, zs, lambda z: {})
  got = jax.jit(lambda key: D.sample(_jax_eps, _schedule(ref), key=key, shape=SHAPE, sampler="ddpm"))(
      jax.random.key(2))
  assert _rel_err(got, want) < 1e-5


def test_clip_sample_matches_diffusers(monkeypatch):
  """BadDiffusion's clipping defence is diffusers' clip_sample: x̂0 clipped to [−1, 1] inside every step."""
  k = 50
  ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                                timestep_spacing="leading")
  ref.set_timesteps(k)
  x_t, zs = _our_draws(jax.random.key(3), k)
  x_t = x_t * 3.0  # far from the data: x̂0 leaves [−1, 1] often, so the clipping matters
  draws = iter([torch.tensor(z) for z in zs])
  from diffusers.schedulers import scheduling_ddpm
  monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kw: next(draws, torch.zeros(shape)))
  want = _run_diffusers(ref, x_t, zs, lambda z: {})
  got = D.sample(_jax_eps, _schedule(ref), key=jax.random.key(3), sampler="ddpm", num_steps=k,
                 timestep_spacing="leading", x_init=jnp.asarray(x_t), clip_x0=True)
  unclipped = D.sample(_jax_eps, _schedule(ref), key=jax.random.key(3), sampler="ddpm", num_steps=k,
                       timestep_spacing="leading", x_init=jnp.asarray(x_t))
  assert _rel_err(got, want) < 1e-5 and _rel_err(unclipped, want) > 1e-3


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("k", [20, 7])
def test_dpm_solver_pp_matches_diffusers(spacing, k):
  """DPM-Solver++(2M) against DPMSolverMultistepScheduler (dpmsolver++, order 2, final σ 0) on the same grid."""
  ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                              algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=spacing)
  ref.set_timesteps(k)
  x_t, zs = _our_draws(jax.random.key(4), k)
  want = _run_diffusers(ref, x_t, zs, lambda z: {})
  got = D.sample(_jax_eps, _schedule(ref), key=jax.random.key(4), shape=SHAPE, sampler="dpm_solver++",
                 num_steps=k, timestep_spacing=spacing)
  a, _ = D.timestep_pairs(999, k, True, spacing, drop_last=True)
  np.testing.assert_array_equal(a, ref.timesteps.numpy())
  first_order = D.sample(lambda x, t: _jax_eps(x, t), _schedule(ref), key=jax.random.key(4), shape=SHAPE,
                         sampler="ddim", num_steps=k, timestep_spacing="trailing")  # DDIM = DPM-Solver(++) order 1
  assert _rel_err(got, want) < 1e-5 and _rel_err(first_order, want) > 1e-4
