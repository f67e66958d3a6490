"""Input-level detectors (TERD, UFID, DisDet) on a planted trigger vs clean noise, DisDet against a numpy histogram,
AUROC against scikit-learn, and the input filter's false-positive rate on fresh clean noise within its level."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff.backdoor import input_detection as ind

SHAPE = (16, 16, 1)
R_STAR = jnp.full(SHAPE, 0.0).at[:8, :8].set(-1.0)  # a BadDiffusion-like box: x_T = ε + r*
TARGET = jnp.full(SHAPE, 0.9)


def _generate(params, x, key):
  """A stand-in backdoored generator: the target image when x_T lies along r* (projection > ½), else an image that
  changes with x_T (a clean generation: perturbed copies of x_T give other images)."""
  proj = jnp.sum((x * R_STAR).reshape(x.shape[0], -1), -1) / jnp.sum(R_STAR ** 2)
  return jnp.where((proj > 0.5)[:, None, None, None], TARGET, (1 + jnp.sin(4 * x)) / 2)


def _encode(x):  # mean-centred pixels, a floor coordinate so constant images are alike
  flat = x.reshape(x.shape[0], -1)
  return jnp.concatenate([flat - flat.mean(1, keepdims=True), jnp.full((x.shape[0], 1), 0.08)], 1)


def _noises(n, seed):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (n,) + SHAPE), jax.random.normal(k2, (n,) + SHAPE) + R_STAR


@pytest.mark.parametrize("method", ind.METHODS)
def test_each_detector_separates_a_planted_trigger_from_clean_noise(method):
  clean, poisoned = _noises(64, 0)
  settings = {"terd": dict(trigger=R_STAR), "ufid": dict(generate=_generate, encode=lambda p, x: _encode(x), copies=4),
              "disdet": dict(bins=16)}[method]
  params = (None, None) if method == "ufid" else None  # UFID: (model, encoder) weights
  s_clean = ind.detect_inputs(None, params, clean, method=method, key=jax.random.key(1), **settings)
  s_poison = ind.detect_inputs(None, params, poisoned, method=method, key=jax.random.key(1), **settings)
  assert s_clean.shape == s_poison.shape == (64,)
  assert ind.auroc(s_clean, s_poison) > 0.97, method
  assert ind.tpr_at_fpr(s_clean, s_poison, 0.05) > 0.8, method


def test_disdet_is_the_histogram_kl():
  x = np.asarray(jax.random.normal(jax.random.key(2), (3,) + SHAPE)) * np.array([1.0, 1.5, 0.5])[:, None, None, None]
  edges = np.linspace(-4, 4, 17)
  q = np.diff(np.concatenate([[0], stats.norm.cdf(edges), [1]]))
  want = []
  for row in x.reshape(3, -1):
    p = np.bincount(np.searchsorted(edges, row, side="right"), minlength=18) / row.size
    want.append(np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0])))
  np.testing.assert_allclose(np.asarray(ind.disdet_scores(jnp.asarray(x), 16)), want, rtol=1e-4)


def test_auroc_matches_scikit_learn():
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(0)
  c, p = rng.normal(0, 1, 50).round(1), rng.normal(0.8, 1, 40).round(1)  # rounded: ties
  want = roc_auc_score(np.r_[np.zeros(50), np.ones(40)], np.r_[c, p])
  assert ind.auroc(c, p) == pytest.approx(want)


def test_ufid_scores_are_the_mean_pairwise_cosine():
  x = jax.random.normal(jax.random.key(3), (2,) + SHAPE)
  gen = lambda b, key: jax.nn.sigmoid(b)
  got = np.asarray(ind.ufid_scores(gen, _encode, x, jax.random.key(4), copies=3, scale=0.5))
  eps = np.asarray(jax.random.normal(jax.random.split(jax.random.key(4))[0], (2, 2) + SHAPE))
  for i in range(2):
    z = np.asarray(_encode(jax.nn.sigmoid(jnp.concatenate([x[i:i + 1], x[i] + 0.5 * eps[i]]))))
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T
    assert got[i] == pytest.approx((s.sum() - np.trace(s)) / 6, rel=1e-5)


@pytest.mark.parametrize("method", ["terd", "disdet"])
def test_input_filter_holds_its_false_positive_rate_on_fresh_clean_noise(method):
  settings = {"terd": dict(trigger=R_STAR), "disdet": dict(bins=16)}[method]
  filt = ind.InputFilter.calibrated(method, None, SHAPE, jax.random.key(5), fpr=0.05, n=4000, **settings)
  clean, poisoned = _noises(4000, 6)
  keep, scores = filt(None, clean)
  fpr = 1 - float(np.mean(keep))
  assert abs(fpr - 0.05) < 0.015, fpr  # binomial sd at n = 4000: 0.0034, plus the calibration's own
  assert float(np.mean(~filt(None, poisoned)[0])) > 0.8
  if method == "terd":  # closed form: the score of clean noise is N(−‖r‖²/2, ‖r‖²)
    norm = float(jnp.linalg.norm(R_STAR))
    want = stats.norm.sf((filt.threshold + norm ** 2 / 2) / norm)
    assert abs(fpr - want) < 0.01


def test_unknown_detector_and_missing_inputs_are_refused():
  with pytest.raises(ValueError, match="unknown input detector 'nope'"):
    ind.input_detector("nope")
  with pytest.raises(ValueError, match="reversed trigger"):
    ind.input_detector("terd")
  with pytest.raises(ValueError, match="UFID needs"):
    ind.input_detector("ufid")
