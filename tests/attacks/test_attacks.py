"""Attacks against a linear classifier, whose exact ℓ∞ robust accuracy is known in closed form.

For logits Wx + b and x with the ℓ∞ ball inside [0, 1], x is robust iff for every j ≠ y
(w_y − w_j)·x + (b_y − b_j) > ε‖w_y − w_j‖₁ (each pairwise margin is minimised at a corner).
"""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import attacks

EPS = 0.05
K, SHAPE = 4, (6, 6, 1)


def _problem(n=64, seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(int(np.prod(SHAPE)), K)).astype(np.float32)
  b = rng.normal(size=K).astype(np.float32)
  x = rng.uniform(EPS, 1 - EPS, size=(4 * n,) + SHAPE).astype(np.float32)
  logits = x.reshape(len(x), -1) @ w + b
  y = logits.argmax(1).astype(np.int32)
  margins = np.stack([(logits[np.arange(len(x)), y] - logits[:, j]) - EPS * np.abs(w[:, y] - w[:, [j]]).sum(0)
                      for j in range(K)], 1)
  margins[np.arange(len(x)), y] = np.inf
  worst = margins.min(1)
  keep = np.abs(worst) > 0.05  # no point on the decision boundary up to float error
  x, y, worst = x[keep][:n], y[keep][:n], worst[keep][:n]
  return jnp.asarray(w), jnp.asarray(b), jnp.asarray(x), jnp.asarray(y), float(np.mean(worst > 0))


W, B, X, Y, EXACT = _problem()


@jax.jit
def linear_logits(x):
  return x.reshape(x.shape[0], -1) @ W + B


def _acc(x):
  return float(jnp.mean(jnp.argmax(linear_logits(x), 1) == Y))


def test_problem_is_nontrivial():
  assert 0.2 < EXACT < 0.8 and _acc(X) == 1.0


@pytest.mark.parametrize("compact_buckets", [8, 1])  # the robust points only / the whole batch every time
def test_autoattack_reaches_exact_robust_accuracy(compact_buckets):
  x_adv, rep = attacks.autoattack(linear_logits, X, Y, key=jax.random.key(0), eps=EPS, steps=20,
                                  square_queries=200, return_report=True, compact_buckets=compact_buckets)
  assert x_adv.shape == X.shape and x_adv.dtype == X.dtype
  assert _acc(x_adv) == pytest.approx(EXACT, abs=1e-9)
  assert rep["clean"] == 1.0 and rep["square"] == pytest.approx(EXACT)
  assert rep["apgd-ce"] >= rep["apgd-t"] >= rep["fab-t"] >= rep["square"]


def test_robust_subset_pads_to_few_shapes():
  from jaxdiff.attacks.autoattack import robust_subset
  rng = np.random.default_rng(0)
  sizes = set()
  for count in range(1, 65):
    robust = np.zeros(64, bool)
    robust[rng.choice(64, count, replace=False)] = True
    idx, c = robust_subset(robust, 8)
    assert c == count and np.array_equal(idx[:c], np.flatnonzero(robust))  # the robust points, in order
    assert len(idx) % 8 == 0 and count <= len(idx) < count + 8 and robust[idx].all()  # padding repeats one of them
    sizes.add(len(idx))
  assert sizes == {8, 16, 24, 32, 40, 48, 56, 64}
  assert len(robust_subset(np.ones(5, bool), 8)[0]) == 5 and len(robust_subset(np.eye(1, 5, 2)[0] > 0, 1)[0]) == 5


def test_autoattack_attacks_only_the_points_still_robust(monkeypatch):
  aa = importlib.import_module("jaxdiff.attacks.autoattack")  # the module (the package exports the function)
  calls = []
  for name in ("_apgd", "_fab_t", "_square"):  # record the batch size of every attack call
    monkeypatch.setattr(aa, name, lambda f, x, *a, _run=getattr(aa, name), _name=name, **kw: (
        calls.append((_name, x.shape[0])), _run(f, x, *a, **kw))[1])
  _, rep = aa.autoattack(linear_logits, X, Y, key=jax.random.key(0), eps=EPS, steps=5, n_target_classes=2,
                         square_queries=10, return_report=True)
  n = len(X)
  assert calls[0] == ("_apgd", n) and 0 < rep["apgd-ce"] < 1  # APGD-CE sees the whole batch, some points fall
  bound = -(-round(rep["apgd-ce"] * n) // 8) * 8  # the survivors, padded to a multiple of n / 8
  sizes = [m for _, m in calls[1:]]
  assert {c for c, _ in calls[1:]} == {"_apgd", "_fab_t", "_square"}
  assert bound < n and all(0 < m <= bound for m in sizes) and sizes == sorted(sizes, reverse=True)


def _min_distance(x, a, m, norm):
  """Smallest ‖δ‖ with a·δ ≥ m and x + δ ∈ [0, 1], by bisection on the level t of δ(t) = clip(t·sign(a))
  (ℓ∞) or clip(t·a) (ℓ2), which is the exact minimiser for some t; inf when the box forbids it."""
  reach = lambda t: np.clip(t * (np.sign(a) if norm == "linf" else a), -x, 1 - x)
  if a @ reach(1e6) < m:
    return np.inf
  lo, hi = 0.0, 1e6
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (lo, mid) if a @ reach(mid) >= m else (mid, hi)
  d = reach(hi)
  return float(np.abs(d).max() if norm == "linf" else np.linalg.norm(d))


def _exact_distances(norm):
  """Per point, the minimal distance to any other class's decision region (box-constrained)."""
  x, y, w = np.asarray(X).reshape(len(X), -1), np.asarray(Y), np.asarray(W)
  lg = x @ w + np.asarray(B)
  return np.array([min(_min_distance(x[i], w[:, j] - w[:, y[i]], lg[i, y[i]] - lg[i, j], norm)
                       for j in range(K) if j != y[i]) for i in range(len(x))])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_finds_near_minimal_adversarial_examples(norm):
  """With every other class as a target, FAB-T's closest adversarial point is within 2 % of the exact
  minimal distance (FAB's overshoot η = 1.05 then backward steps bring it close)."""
  exact = _exact_distances(norm)
  order = np.argsort(-np.asarray(linear_logits(X)), 1)
  found = np.full(len(X), np.inf)
  run = jax.jit(lambda t: attacks.fab_t(linear_logits, X, Y, t, key=jax.random.key(0), eps=10.0, norm=norm,
                                        steps=50))
  for j in range(1, K):
    x_adv, fooled = run(jnp.asarray(order[:, j], jnp.int32))
    d = (np.asarray(x_adv) - np.asarray(X)).reshape(len(X), -1)
    d = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
    found = np.minimum(found, np.where(np.asarray(fooled), d, np.inf))
    assert np.all(np.argmax(np.asarray(linear_logits(x_adv)), 1)[np.asarray(fooled)] != np.asarray(Y)[np.asarray(fooled)])
  ratio = found / exact
  assert np.all(ratio >= 1 - 1e-4) and np.all(ratio < 1.02), (ratio.min(), ratio.max())


def test_projection_onto_hyperplane_and_box_is_exact():
  from jaxdiff.attacks.fab import project_hyperplane_box
  rng = np.random.default_rng(1)
  for norm in ("linf", "l2"):
    for _ in range(20):
      x0, w = rng.uniform(size=40), rng.normal(size=40)
      w[:4] = 0.0
      c = float(rng.normal() * 2)
      d = np.asarray(project_hyperplane_box(jnp.asarray(x0), jnp.asarray(w), jnp.asarray(c), norm))
      assert np.all(x0 + d >= -1e-6) and np.all(x0 + d <= 1 + 1e-6)
      want = _min_distance(x0, w * np.sign(c), abs(c), norm)
      if np.isfinite(want):
        assert w @ d == pytest.approx(c, rel=1e-4, abs=1e-4)
        size = np.abs(d).max() if norm == "linf" else np.linalg.norm(d)
        assert size == pytest.approx(want, rel=1e-4, abs=1e-6)
  # Infeasible: the box point that goes furthest towards the plane.
  d = np.asarray(project_hyperplane_box(jnp.asarray([0.5, 0.5]), jnp.asarray([1.0, 1.0]), jnp.asarray(5.0), "linf"))
  np.testing.assert_allclose(d, [0.5, 0.5], atol=1e-6)


def test_l2_square_reaches_near_exact_without_gradients():
  from jaxdiff.attacks.square import meta_pseudo_gaussian
  p = meta_pseudo_gaussian(5)
  assert np.sum(p ** 2) == pytest.approx(1.0) and p[:2].min() > 0 and p[2:].max() < 0
  exact = float(np.mean(_exact_distances("l2") > 1.0))
  x_adv, fooled = attacks.square(linear_logits, X, Y, key=jax.random.key(0), eps=1.0, norm="l2", queries=1000)
  assert _acc(x_adv) == pytest.approx(1 - float(np.mean(fooled)))
  assert exact - 1e-9 <= _acc(x_adv) <= exact + 0.1


def test_pgd_never_below_exact_and_targeted_pgd():
  for norm_step in (None, 0.01):
    x_adv = attacks.pgd(linear_logits, X, Y, key=jax.random.key(1), eps=EPS, steps=20, step_size=norm_step)
    assert _acc(x_adv) >= EXACT - 1e-9
  tgt = (Y + 1) % K
  x_t = attacks.pgd(linear_logits, X, Y, key=jax.random.key(1), eps=0.5, steps=50, targeted=True, target=tgt)
  assert float(jnp.mean(jnp.argmax(linear_logits(x_t), 1) == tgt)) > 0.9


@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
def test_ball_box_and_determinism(norm, eps):
  x = X.at[:8].set(0.0)  # points on the box boundary too
  runs = {
      "pgd": lambda k: attacks.pgd(linear_logits, x, Y, key=k, eps=eps, steps=10, norm=norm),
      "apgd": lambda k: attacks.apgd(linear_logits, x, Y, key=k, eps=eps, steps=10, norm=norm)[0],
      "square": lambda k: attacks.square(linear_logits, x, Y, key=k, eps=eps, norm=norm, queries=50)[0],
      "fab-t": lambda k: attacks.fab_t(linear_logits, x, Y, (Y + 1) % K, key=k, eps=eps, norm=norm, steps=10,
                                       restarts=2)[0],
      "autoattack": lambda k: attacks.autoattack(linear_logits, x, Y, key=k, eps=eps, norm=norm, steps=5,
                                                 n_target_classes=2, square_queries=20),
  }
  for name, run in runs.items():
    a, b = run(jax.random.key(3)), run(jax.random.key(3))
    np.testing.assert_array_equal(a, b, err_msg=name)
    d = (a - x).reshape(len(x), -1)
    size = jnp.max(jnp.abs(d), 1) if norm == "linf" else jnp.linalg.norm(d, axis=1)
    assert float(size.max()) <= eps * (1 + 1e-5), name
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0, name


def test_apgd_checkpoints_follow_the_paper():
  from jaxdiff.attacks.apgd import checkpoints
  assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_eot_pgd_on_stochastic_model_and_ead():
  def noisy(x, key):  # logits with additive noise: EOT averages it out
    return linear_logits(x) + 0.1 * jax.random.normal(key, (x.shape[0], K))
  x_adv = attacks.pgd(noisy, X, Y, key=jax.random.key(0), eps=EPS, steps=10, eot=4, stochastic=True)
  assert _acc(x_adv) >= EXACT - 1e-9 and _acc(x_adv) < 1.0
  x_e, fooled = jax.jit(functools.partial(attacks.ead, linear_logits, beta=1e-3, c_init=0.1, steps=100,
                                           search_steps=6))(X, Y)
  fooled = np.asarray(fooled)
  assert fooled.mean() > 0.9
  # Closed form: the minimal ℓ2 distance to the boundary is min_j margin_j/‖w_y − w_j‖₂ (box inactive
  # for most points); EAD's ℓ2 distance can't beat it and should come close.
  lg = np.asarray(linear_logits(X))
  w, y = np.asarray(W), np.asarray(Y)
  dmin = np.array([min((lg[i, y[i]] - lg[i, j]) / np.linalg.norm(w[:, y[i]] - w[:, j])
                       for j in range(K) if j != y[i]) for i in range(len(y))])
  d = np.linalg.norm((np.asarray(x_e) - np.asarray(X)).reshape(len(y), -1), axis=1)
  assert np.all(d[fooled] >= dmin[fooled] * (1 - 1e-3))
  assert np.median(d[fooled] / dmin[fooled]) < 1.5
  assert np.all(np.argmax(np.asarray(linear_logits(x_e)), 1)[fooled] != np.asarray(Y)[fooled])
  assert float(x_e.min()) >= 0 and float(x_e.max()) <= 1


def test_adversarial_training_loss_uses_in_ball_adversarial_examples():
  from jaxdiff.attacks.training import adversarial_loss
  from jaxdiff.train import classifier_loss
  apply = lambda v, x, train=False, rngs=None, mutable=None: (linear_logits(x), {}) if mutable else linear_logits(x)
  batch = {"image": X, "label": Y}
  clean, _ = classifier_loss()(apply, {}, {}, batch, jax.random.key(0))
  adv_fn = adversarial_loss(classifier_loss(), eps=EPS, step_size=EPS / 4, steps=8)
  adv, (m, _) = adv_fn(apply, {}, {}, batch, jax.random.key(0))
  assert float(adv) > float(clean)
  assert float(m["accuracy"]) >= EXACT - 1e-9  # never below the exact robust accuracy
