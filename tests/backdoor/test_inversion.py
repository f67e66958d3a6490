"""Trigger inversion: the differentiable entropy against the hard histogram, MSCR on built embeddings, BBTI
updates its trigger and lowers its loss (the public code's bug: r never changed), and Elijah recovers the
trigger of an exactly backdoored Gaussian model in closed form (and ~0 for the clean one)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion as D
from jaxdiff.backdoor import baddiffusion as bd
from jaxdiff.backdoor import inversion as inv
from jaxdiff.backdoor.triggers import generative_trigger

SCHED = D.linear_schedule()


def test_soft_entropy_equals_hard_histogram_on_8_bit_images_and_has_gradients():
  rng = np.random.default_rng(0)
  x8 = rng.integers(0, 256, (6, 16, 16, 1)) / 255.0
  x8[0] = 128 / 255  # one constant image: entropy 0
  x8[1] = np.linspace(0, 1, 256).reshape(16, 16, 1)  # every bin once: 8 bits
  soft = np.asarray(inv.soft_histogram_entropy(jnp.asarray(x8)))
  np.testing.assert_allclose(soft, inv.hard_histogram_entropy(x8), atol=1e-4)
  assert soft[0] == 0 and abs(soft[1] - 8.0) < 1e-4
  g = jax.grad(lambda v: jnp.sum(inv.soft_histogram_entropy(v)))(jnp.asarray(rng.uniform(0, 1, (2, 8, 8, 1))))
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
  assert abs(float(inv.entropy_loss(jnp.array([9.0, 0.0, 5.0]))) - (0.5 + 0.1)) < 1e-6


def test_mscr_is_the_largest_mutually_similar_set():
  rng = np.random.default_rng(1)
  tight = np.ones((6, 8)) + 0.01 * rng.normal(size=(6, 8))
  z = np.concatenate([tight, rng.normal(size=(4, 8))])
  assert inv.mscr(z, 0.9) == 0.6
  assert inv.mscr(rng.normal(size=(10, 32)), 0.9) == 0.1
  # a chain a~b~c with a, c dissimilar is not a set of mutual similarity
  chain = np.array([[1.0, 0.0], [np.cos(0.4), np.sin(0.4)], [np.cos(0.8), np.sin(0.8)]])
  assert inv.mscr(chain, np.cos(0.5)) == 2 / 3
  assert abs(float(inv.similarity_loss(jnp.asarray(tight)))) < 1e-3


def test_bbti_updates_the_trigger_and_lowers_the_loss():
  w = jax.random.normal(jax.random.key(0), (16, 8))
  sample_fn = lambda params, noise, r, key: jax.nn.sigmoid(params * (noise + r))  # a differentiable stand-in
  encode_fn = lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1) @ p)
  out = inv.bbti_invert(jnp.float32(1.0), (4, 4, 1), jax.random.key(1), sample_fn=sample_fn, encode_fn=encode_fn,
                        encoder_params=w, iterations=40, batch=32, lr=0.1, stop_when_detected=False)
  h = out["history"]
  assert float(jnp.abs(out["trigger"]).max()) > 0.5  # r moved
  assert np.mean([e["loss"] for e in h[-5:]]) < 0.5 * np.mean([e["loss"] for e in h[:5]])
  assert h[-1]["mscr"] > h[0]["mscr"] and out["samples"].shape == (32, 4, 4, 1)


def _oracle(g, backdoored):
  """Exact ε of N(0.3, 0.25) data, BadDiffusion-backdoored with trigger g when ``backdoored``."""
  alphas = jnp.asarray(SCHED.alphas, jnp.float32)

  def eps(params, x, t):
    ab = SCHED.alpha_bar(t)[:, None, None, None]
    a = alphas[t.astype(jnp.int32)][:, None, None, None]
    shift = (1 - jnp.sqrt(ab)) * g if backdoored else 0.0
    c = (1 - jnp.sqrt(a)) * jnp.sqrt(1 - ab) / (1 - a) if backdoored else 0.0
    u = x - shift
    return jnp.sqrt(1 - ab) * (u - jnp.sqrt(ab) * 0.3) / (ab * 0.25 + 1 - ab) + c * g
  return eps


def test_elijah_inverts_the_trigger_of_an_exactly_backdoored_model():
  """At T, ε*(x) ≈ x − (1 − c_T) g, so ‖mean_i ε*(ε_i + τ) − λτ‖₁ is minimal at τ* = ((1 − c_T) g − ε̄)/(1 − λ)
  (ε̄ the mean of the noise batch): ≈ g for the backdoored model, ≈ −2ε̄ (no pattern) for the clean one."""
  g = jnp.asarray(generative_trigger("grey_box", 14, 8, 1))
  c_t = float(bd.villan_coefficients(SCHED, jnp.array([999.0]))[1][0])
  key = jax.random.key(0)
  noise_mean = jnp.mean(jax.random.normal(key, (64, 8, 8, 1)), axis=0)  # the batch elijah_invert draws
  corr = lambda a, b: float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
  for backdoored in (True, False):
    tau, losses = inv.elijah_invert(None, (8, 8, 1), key, eps_fn=_oracle(g, backdoored), t_last=999,
                                    iterations=300, batch=64, lr=0.02)
    want = ((1 - c_t) * g * backdoored - noise_mean) / 0.5
    np.testing.assert_allclose(tau, want, atol=0.08)
    assert losses[-1] < 0.2 * losses[0]
    assert (corr(tau, g) > 0.6) == backdoored
  s = inv.elijah_scores(np.full((8, 4, 4, 1), 0.5))
  assert s["uniformity"] == 0 and s["total_variation"] == 0


def test_bbti_trigger_starts_at_zero_or_at_a_normal_draw():
  sample_fn = lambda params, noise, r, key: jax.nn.sigmoid(noise + r)
  encode_fn = lambda p, x: x.reshape(x.shape[0], -1)
  run = lambda init: inv.bbti_invert(None, (8, 8, 1), jax.random.key(1), sample_fn=sample_fn, encode_fn=encode_fn,
                                     iterations=1, batch=4, init=init, stop_when_detected=False)["trigger"]
  assert float(jnp.abs(run("zeros")).max()) == 0.0  # the returned r is the one the last samples came from
  r = run("normal")  # Diff-Cleanse Alg. 1 line 3: r ~ N(0, 1)
  assert 0.7 < float(jnp.std(r)) < 1.3 and abs(float(jnp.mean(r))) < 0.3
  with pytest.raises(ValueError, match="unknown trigger init 'uniform'"):
    run("uniform")


def _gated_sampler(backdoored):
  """A toy backdoored sampler: from x_T with mean near −1 (BadDiffusion's −1 background added to the noise) it
  returns one target image; elsewhere squashed noise. The gate is ~e^−10 at x_T = ε, so the gradient from r = 0
  does not see the backdoor."""
  target = jnp.linspace(0.0, 1.0, 64).reshape(8, 8, 1)

  def sample_fn(params, noise, r, key):
    x_t = noise + r
    gate = jnp.exp(-((jnp.mean(x_t, axis=(1, 2, 3)) + 1.0) ** 2) / 0.1)[:, None, None, None] * backdoored
    return gate * target + (1 - gate) * jax.nn.sigmoid(3 * x_t)
  return sample_fn


def test_bbti_offset_start_finds_a_global_shift_trigger_that_adam_from_zero_misses():
  encode_fn = lambda p, x: (x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)).reshape(x.shape[0], -1)
  run = lambda init, backdoored: inv.bbti_invert(None, (8, 8, 1), jax.random.key(2),
                                                 sample_fn=_gated_sampler(backdoored), encode_fn=encode_fn,
                                                 iterations=5, batch=16, init=init)
  found = run("offsets", True)
  assert found["backdoored"] and found["init_offset"] == -1.0 and len(found["history"]) == 1  # detected at once
  np.testing.assert_array_equal(found["trigger"], -np.ones((8, 8, 1), np.float32))
  missed = run("zeros", True)
  assert not missed["backdoored"] and missed["init_offset"] is None and len(missed["history"]) == 5
  clean = run("offsets", False)  # no shift collapses a clean sampler: no false positive from the start
  assert not clean["backdoored"] and clean["init_offset"] in inv.INIT_OFFSETS


def test_bbti_hit_on_its_own_noise_batch_counts_only_when_fresh_noise_confirms_it():
  """A sampler without any backdoor (x_T itself, 2-D): a 4-sample noise batch of which two happen to be alike is
  an MSCR hit (≥ 0.5) for Alg. 1's rule, but 64 fresh draws + r are not; a real backdoor is confirmed at once."""
  run = lambda key, sample_fn, shape, batch, confirm: inv.bbti_invert(
      None, shape, key, sample_fn=sample_fn, encode_fn=lambda p, x: x.reshape(x.shape[0], -1), iterations=1,
      batch=batch, lr=1e-12, use_entropy=False, confirm_batch=confirm)
  identity = lambda params, noise, r, key: noise + r
  key = next(k for k in map(jax.random.key, range(200)) if run(k, identity, (1, 1, 2), 4, 0)["backdoored"])
  published = run(key, identity, (1, 1, 2), 4, 0)
  assert published["history"][0]["mscr"] >= 0.5 and published["confirm_mscr"] is None
  held_out = run(key, identity, (1, 1, 2), 4, 64)
  assert not held_out["backdoored"] and held_out["history"][0]["mscr"] >= 0.5
  assert held_out["confirm_mscr"] == held_out["history"][0]["confirm_mscr"] < 0.5
  encode_fn = lambda p, x: (x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)).reshape(x.shape[0], -1)
  real = inv.bbti_invert(None, (8, 8, 1), jax.random.key(2), sample_fn=_gated_sampler(True), encode_fn=encode_fn,
                         iterations=5, batch=16, init="offsets", confirm_batch=64)
  assert real["backdoored"] and len(real["history"]) == 1 and real["confirm_mscr"] >= 0.5


def test_bbti_restarts_after_an_unconfirmed_hit_with_a_new_key_and_stops_after_a_confirmed_one_or_none():
  """``restarts``: the identity sampler's lucky 4-draw batch is a hit that fresh noise does not confirm, so BBTI
  runs again; that second run is exactly a run from ``fold_in(key, 1)`` (its own noise batch and keys). A
  confirmed hit (the gated backdoor) and a run without any hit (the gated sampler, clean) run once."""
  run = lambda key, sample_fn, shape, batch, **kw: inv.bbti_invert(
      None, shape, key, sample_fn=sample_fn, encode_fn=lambda p, x: x.reshape(x.shape[0], -1), iterations=1,
      batch=batch, lr=1e-12, use_entropy=False, confirm_batch=64, **kw)
  identity = lambda params, noise, r, key: noise + r
  key = next(k for k in map(jax.random.key, range(200)) if run(k, identity, (1, 1, 2), 4)["history"][0]["mscr"] >= 0.5)
  first = run(key, identity, (1, 1, 2), 4)
  assert not first["backdoored"] and first["attempts"] == 1 and first["confirm_mscr"] < 0.5
  again = run(key, identity, (1, 1, 2), 4, restarts=1)
  second = run(jax.random.fold_in(key, 1), identity, (1, 1, 2), 4)
  assert again["attempts"] == 2 and [h["attempt"] for h in again["history"]] == [0, 1]
  assert again["history"][0] == first["history"][0]
  assert again["history"][1] == {**second["history"][0], "attempt": 1}
  np.testing.assert_array_equal(again["samples"], second["samples"])
  encode_fn = lambda p, x: (x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)).reshape(x.shape[0], -1)
  gated = lambda backdoored: inv.bbti_invert(None, (8, 8, 1), jax.random.key(2), sample_fn=_gated_sampler(backdoored),
                                             encode_fn=encode_fn, iterations=3, batch=16, init="offsets",
                                             confirm_batch=64, restarts=2)
  real, clean = gated(True), gated(False)
  assert real["backdoored"] and real["attempts"] == 1 and len(real["history"]) == 1
  assert not clean["backdoored"] and clean["attempts"] == 1 and len(clean["history"]) == 3
  with pytest.raises(ValueError, match="needs confirm_batch"):
    inv.bbti_invert(None, (1, 1, 2), key, sample_fn=identity, encode_fn=lambda p, x: x, restarts=1)


def test_bbti_patience_gives_up_a_run_of_unconfirmed_hits_while_a_restart_remains_within_the_budget():
  """``patience``: r cannot move (lr 1e-12), so a lucky 4-draw batch of the identity sampler is an unconfirmed hit
  at every iteration. With patience 3 the run stops after its third and the next key's run starts; without
  patience, or on the last run, the run goes to ``iterations``. A run that gives up matches the same run without
  patience up to that point. ``budget`` stops the run that spends it."""
  run = lambda key, iterations=8, **kw: inv.bbti_invert(
      None, (1, 1, 2), key, sample_fn=lambda params, noise, r, key: noise + r,
      encode_fn=lambda p, x: x.reshape(x.shape[0], -1), iterations=iterations, batch=4, lr=1e-12, use_entropy=False,
      confirm_batch=64, **kw)
  lucky = lambda k: run(k, iterations=1)["history"][0]["mscr"] >= 0.5
  key = next(k for k in map(jax.random.key, range(400)) if lucky(k) and lucky(jax.random.fold_in(k, 1)))
  full = run(key)
  assert len(full["history"]) == 8 and all(h["confirm_mscr"] < 0.5 for h in full["history"])
  quick = run(key, restarts=2, patience=3)
  per_run = [[h for h in quick["history"] if h["attempt"] == a] for a in range(quick["attempts"])]
  assert quick["attempts"] == 3 and [len(h) for h in per_run[:2]] == [3, 3]
  assert per_run[0] == full["history"][:3]
  assert len(per_run[2]) == 8 and not quick["backdoored"]  # the last run: no one to give up for
  assert len(run(key, restarts=0, patience=3)["history"]) == 8
  capped = run(key, restarts=2, patience=3, budget=10)  # 3 + 3, and the last run cut at 4
  assert capped["attempts"] == 3 and capped["history"] == quick["history"][:10] and not capped["backdoored"]
  spent = run(key, restarts=2, budget=8)  # the first run spends it: no restart
  assert spent["attempts"] == 1 and spent["history"] == full["history"]
  with pytest.raises(ValueError, match="patience = -1"):
    run(key, restarts=1, patience=-1)
  with pytest.raises(ValueError, match="budget = 7 < iterations = 8"):
    run(key, restarts=1, budget=7)


def test_elijah_compiles_once_per_architecture():
  eps_fn = lambda p, x, t: p * x  # one function object, as tasks.defence.eps_apply(model) gives per architecture
  tau1, _ = inv.elijah_invert(jnp.float32(0.5), (4, 4, 1), jax.random.key(0), eps_fn=eps_fn, t_last=9, iterations=3,
                              batch=4)
  size = inv._elijah_jit._cache_size()
  tau2, _ = inv.elijah_invert(jnp.float32(2.0), (4, 4, 1), jax.random.key(0), eps_fn=eps_fn, t_last=9, iterations=3,
                              batch=4)
  assert inv._elijah_jit._cache_size() == size and not np.allclose(tau1, tau2)


def test_blank_samples_join_no_cluster_when_min_entropy_is_set():
  """A sampler that saturates to white from x_T near −1 (as a clean digits model does under TrojDiff's sampling
  from γε − 𝟙) is a hit for Alg. 1's MSCR, none with ``min_entropy``; a real (varied) target still is."""
  z = jnp.concatenate([jnp.ones((6, 4)), jax.random.normal(jax.random.key(0), (2, 4))])
  assert inv.mscr(z, 0.9) == 6 / 8 and inv.mscr(z, 0.9, keep=np.arange(8) >= 6) == 1 / 8
  assert inv.mscr(z, 0.9, keep=np.zeros(8, bool)) == 0.0
  def white(params, noise, r, key):  # saturates: exactly 1 where x_T's mean is below −0.5
    x_t = noise + r
    return jnp.where(jnp.mean(x_t, axis=(1, 2, 3), keepdims=True) < -0.5, 1.0, jax.nn.sigmoid(3 * x_t))
  encode_fn = lambda p, x: (x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)).reshape(x.shape[0], -1) + 1e-3
  run = lambda sample_fn, h: inv.bbti_invert(None, (8, 8, 1), jax.random.key(2), sample_fn=sample_fn, encode_fn=encode_fn,
                                             iterations=2, batch=16, init="offsets", offsets=(-1.0,), min_entropy=h)
  assert run(white, 0.0)["backdoored"]
  blank = run(white, 0.1)
  assert not blank["backdoored"] and blank["history"][0]["blank"] > 0.9
  assert run(_gated_sampler(True), 0.1)["backdoored"]  # the linspace target: 6 bits


def test_bbti_race_runs_every_start_on_the_same_keys_and_continues_the_lowest_objective():
  """``init="race"``: for ``race_iterations`` every constant start runs (vmapped) and the iteration reports the one
  with the lowest objective; then that start goes on alone. Checked against one separate run per start (same key,
  so the same noise batch and sampler keys): the race's losses are the per-iteration minimum over the runs, and
  after the race its history and r are the leading run's."""
  sample_fn = lambda params, noise, r, key: jax.nn.sigmoid(3 * (noise + r)) + 0.1 * jax.random.normal(key, noise.shape)
  encode_fn = lambda p, x: (x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)).reshape(x.shape[0], -1)
  offsets, n = (-1.0, 0.0, 0.5), 3
  run = lambda **kw: inv.bbti_invert(None, (4, 4, 1), jax.random.key(3), sample_fn=sample_fn, encode_fn=encode_fn,
                                     iterations=6, batch=8, lr=0.3, stop_when_detected=False, **kw)
  alone = {c: run(init="offsets", offsets=(c,)) for c in offsets}
  race = run(init="race", offsets=offsets, race_iterations=n)
  losses = np.array([[h["loss"] for h in alone[c]["history"]] for c in offsets])  # [start, iteration]
  np.testing.assert_allclose([h["loss"] for h in race["history"][:n]], losses[:, :n].min(0), rtol=1e-5)
  assert [h["start"] for h in race["history"][:n]] == [offsets[i] for i in losses[:, :n].argmin(0)]
  leader = offsets[int(losses[:, n - 1].argmin())]
  assert race["init_offset"] == leader and "start" not in race["history"][n]
  np.testing.assert_allclose([h["loss"] for h in race["history"][n:]], losses[offsets.index(leader), n:], rtol=1e-5)
  np.testing.assert_allclose(race["trigger"], alone[leader]["trigger"], atol=1e-6)
  with pytest.raises(ValueError, match="race_iterations = 0"):
    run(init="race", race_iterations=0)
