"""The samplers on improved diffusion's cosine schedule with 4,000 steps, respaced, against the OpenAI code
(guided-diffusion-sdk's SpacedDiffusion): the learned-variance ancestral chain and DDIM, step for step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
gd = pytest.importorskip("guided_diffusion.gaussian_diffusion")
script_util = pytest.importorskip("guided_diffusion.script_util")

from jaxdiff import diffusion as D  # noqa: E402

T, K, SHAPE = 4000, 10, (3, 4, 4, 2)  # respacing "10": indices round(i · 3999/9), as ours (linspace, rounded)


def _net(xp, x, t):
  """A learned-σ 'network' of x (NHWC) and timestep t [B]: ε = 0.8 tanh(x) + t/T, v ∈ (−1, 1) varying."""
  t = xp.reshape(t, (-1, 1, 1, 1)) / T
  eps = 0.8 * xp.tanh(x) + t
  v = xp.tanh(2.0 * x[..., ::-1] + 3.0 * t - 1.5)
  return xp.concatenate([eps, v], -1)


def _openai_net(x, t):  # NCHW torch in, NCHW out
  out = _net(np, x.permute(0, 2, 3, 1).double().numpy(), t.double().numpy())
  return torch.from_numpy(out.transpose(0, 3, 1, 2))


def _spaced(learn_sigma=True):
  return script_util.create_gaussian_diffusion(steps=T, learn_sigma=learn_sigma, noise_schedule="cosine",
                                               timestep_respacing=str(K))


def test_cosine_4000_matches_openai_schedule():
  ours = np.asarray(D.cosine_schedule(T).alphas_cumprod, np.float64)
  theirs = np.cumprod(1.0 - gd.get_named_beta_schedule("cosine", T))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_learned_variance_ddpm_chain_matches_openai(monkeypatch):
  """Same x_T, same noise per step: our ancestral chain with variance='learned' (log σ² interpolated between
  log β and log β̃ of each respaced pair) and clipped x̂0 equals p_sample_loop's."""
  key = jax.random.key(0)
  x_T = jax.random.normal(jax.random.key(1), SHAPE)
  eps_fn = lambda x, t: _net(jnp, x, t)
  ours = D.reverse(eps_fn, D.cosine_schedule(T), x_T, key=key, t_start=T - 1, sampler="ddpm", num_steps=K,
                   variance="learned", clip_x0=True)
  # The noise of each of our K − 1 steps (the body splits the carried key once per step), then OpenAI's loop fed
  # the same draws (its last step, at index 0, returns the mean and ignores its noise).
  noises, k = [], key
  for _ in range(K - 1):
    k, sub = jax.random.split(k)
    noises.append(np.asarray(jax.random.normal(sub, SHAPE), np.float64).transpose(0, 3, 1, 2))
  noises.append(np.zeros_like(noises[0]))
  feed = iter(noises)
  monkeypatch.setattr(torch, "randn_like", lambda x, **kw: torch.from_numpy(next(feed)))
  diff = _spaced()
  x = torch.from_numpy(np.asarray(x_T, np.float64).transpose(0, 3, 1, 2))
  for i in reversed(range(K)):
    x = diff.p_sample(_openai_net, x, torch.full((SHAPE[0],), i), clip_denoised=True)["sample"]
  theirs = x.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-5)
  # The learned variance matters: the fixed ones give other chains.
  for variance in ("posterior", "beta"):
    other = D.reverse(lambda x, t: eps_fn(x, t)[..., :2], D.cosine_schedule(T), x_T, key=key, t_start=T - 1,
                      sampler="ddpm", num_steps=K, variance=variance, clip_x0=True)
    assert np.abs(np.asarray(other) - theirs).max() > 1e-2


def test_learned_variance_step_log_variance_matches_openai():
  """Each respaced step's mean and log σ² (from v), from the coefficients our chain uses, against
  p_mean_variance's (x̂0 unclipped)."""
  diff = _spaced()
  rng = np.random.default_rng(0)
  sched = D.cosine_schedule(T)
  grid = D.samplers.time_grid(T - 1, K, True)
  for i in range(K - 1):  # our step i goes a_i → a_{i+1}; OpenAI's spaced index K − 1 − i
    x = rng.normal(size=SHAPE)
    out = diff.p_mean_variance(_openai_net, torch.from_numpy(x.transpose(0, 3, 1, 2)),
                               torch.full((SHAPE[0],), K - 1 - i), clip_denoised=False)
    c = D.samplers._coefficients("ddpm", np.asarray(sched.alphas_cumprod, np.float64), grid[i:i + 1],
                                 grid[i + 1:i + 2], np, variance="learned")
    v = _net(np, x, np.full((SHAPE[0],), grid[i]))[..., 2:]
    frac = (v + 1) / 2
    ours_logvar = frac * c["log_beta"][0] + (1 - frac) * c["log_post"][0]
    np.testing.assert_allclose(ours_logvar, out["log_variance"].numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-9)
    eps = _net(np, x, np.full((SHAPE[0],), grid[i]))[..., :2]
    x0 = (x - c["sqrt_1m_ab"][0] * eps) / c["sqrt_ab"][0]
    np.testing.assert_allclose(c["coef_x0"][0] * x0 + c["coef_xt"][0] * x,
                               out["mean"].numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)  # ᾱ in float32


def test_ddim_on_respaced_cosine_matches_openai():
  """Deterministic DDIM (η = 0, clipped x̂0 and the ε consistent with it) on the respaced 4,000-step cosine
  schedule: the ε half of the learned-σ output, as the OpenAI code's ddim_sample_loop uses it."""
  x_T = jax.random.normal(jax.random.key(2), SHAPE)
  ours = D.reverse(lambda x, t: _net(jnp, x, t)[..., :2], D.cosine_schedule(T), x_T, key=jax.random.key(0),
                   t_start=T - 1, sampler="ddim", num_steps=K, clip_x0=True)
  theirs = _spaced().ddim_sample_loop(_openai_net, (SHAPE[0], SHAPE[3], SHAPE[1], SHAPE[2]),
                                      noise=torch.from_numpy(np.asarray(x_T, np.float64).transpose(0, 3, 1, 2)),
                                      clip_denoised=True, eta=0.0, device="cpu")
  np.testing.assert_allclose(np.asarray(ours), theirs.numpy().transpose(0, 2, 3, 1), atol=2e-5)


def test_learned_variance_needs_the_whole_output():
  with pytest.raises(ValueError, match="2C"):
    D.reverse(lambda x, t: _net(jnp, x, t)[..., :2], D.cosine_schedule(T), jnp.zeros(SHAPE), key=jax.random.key(0),
              t_start=T - 1, sampler="ddpm", num_steps=K, variance="learned")
