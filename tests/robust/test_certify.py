"""CERTIFY/PREDICT against a base classifier with closed-form votes: a threshold on one pixel.

Votes for class 1 are Bernoulli(p) with p = Φ((v − ½)/σ) for pixel value v, so counts are Binomial(n, p).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import beta, norm

from jaxdiff.parallel import make_mesh
from jaxdiff.robust import ABSTAIN, certify, clopper_pearson_lower, predict, sample_counts

SIGMA = 0.25


def threshold(x):
  return (x[:, 0, 0, 0] > 0.5).astype(jnp.int32)


def images_with_p(ps, shape=(2, 2, 1)):
  v = 0.5 + SIGMA * norm.ppf(np.asarray(ps, np.float64))
  x = np.full((len(ps),) + shape, 0.3, np.float32)
  x[:, 0, 0, 0] = v
  return jnp.asarray(x)


def test_counts_are_binomial():
  p, n, m = 0.7, 2000, 256
  counts = np.asarray(sample_counts(threshold, images_with_p([p] * m), key=jax.random.key(0), sigma=SIGMA,
                                    num_classes=2, num=n, batch_size=4096))
  assert counts.shape == (m, 2) and np.all(counts.sum(1) == n)
  k = counts[:, 1]
  assert abs(k.mean() - n * p) < 4 * np.sqrt(n * p * (1 - p) / m)
  var = n * p * (1 - p)
  assert abs(k.var(ddof=1) / var - 1) < 4 * np.sqrt(2 / (m - 1))


def test_n_not_multiple_of_chunk_counts_exactly_n():
  counts = sample_counts(threshold, images_with_p([0.5, 0.9, 0.1]), key=jax.random.key(1), sigma=SIGMA,
                         num_classes=2, num=1001, batch_size=300)
  assert np.all(np.asarray(counts).sum(1) == 1001)


def test_certify_predictions_abstentions_and_radii():
  ps = [0.999, 0.9, 0.02, 0.5, 0.5]
  pred, radius, count = certify(threshold, images_with_p(ps), key=jax.random.key(2), sigma=SIGMA,
                                num_classes=2, n0=100, n=5000, alpha=0.001, batch_size=5000)
  assert list(pred[:3]) == [1, 1, 0] and list(pred[3:]) == [ABSTAIN, ABSTAIN]
  assert np.all(radius[3:] == 0)
  # Radii are σ Φ⁻¹ of the Clopper–Pearson bound of the reported count (scipy's Beta quantile).
  for i in range(3):
    np.testing.assert_allclose(radius[i], SIGMA * norm.ppf(beta.ppf(0.001, count[i], 5000 - count[i] + 1)),
                               rtol=1e-9)
  # ... and close to the radius of the true probability, σ Φ⁻¹(p_A), from below.
  true = SIGMA * norm.ppf(np.maximum([0.999, 0.9, 0.98], 0))
  assert np.all(radius[:3] <= true + 1e-3) and np.all(radius[:3] > true - 0.1)


def test_clopper_pearson_edge_cases():
  assert clopper_pearson_lower(0, 100, 0.001) == 0.0
  np.testing.assert_allclose(clopper_pearson_lower(100, 100, 0.001), 0.001 ** (1 / 100), rtol=1e-9)


def test_predict_abstains_near_half():
  pred = predict(threshold, images_with_p([0.5, 0.99, 0.01]), key=jax.random.key(3), sigma=SIGMA,
                 num_classes=2, n=1000, alpha=0.001)
  assert list(pred) == [ABSTAIN, 1, 0]


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices")
def test_sharded_equals_unsharded():
  x = images_with_p([0.6, 0.8, 0.3, 0.55])
  kw = dict(key=jax.random.key(4), sigma=SIGMA, num_classes=2, num=777, batch_size=400)
  one = sample_counts(threshold, x, mesh=make_mesh(jax.devices()[:1]), **kw)
  four = sample_counts(threshold, x, mesh=make_mesh(jax.devices()[:4]), **kw)
  np.testing.assert_array_equal(one, four)


def test_bf16_denoised_classifier_agrees_with_fp32_on_the_shipped_digits_models():
  """bf16 compute (fp32 params) for the U-Net and the classifier: the base classifier's labels on noisy test
  digits agree with fp32's (the same noise), and both stay accurate."""
  from configs import certify_digits
  from jaxdiff.data import make_source
  from jaxdiff.robust import DenoisedClassifier
  from jaxdiff.convert import load_model
  from jaxdiff.tasks.common import load_classifier
  src = make_source(certify_digits.get_config().data, "test")
  x, y = src.get(np.arange(64))
  noisy = jnp.asarray(x) + 0.25 * jax.random.normal(jax.random.key(0), x.shape)
  labels = {}
  for dtype in ("float32", "bfloat16"):
    unet, uvars, _ = load_model("assets:digits/ddpm", dtype=dtype, kind="unet")
    clf, cvars = load_classifier("assets:digits/cnn", dtype=dtype)
    assert jnp.dtype(unet.cfg.dtype) == jnp.dtype(dtype)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(uvars["params"]))
    base = DenoisedClassifier(unet, clf)
    labels[dtype] = np.asarray(jax.jit(base)({"denoiser": uvars["params"], "classifier": cvars}, noisy, 0.25))
  assert (labels["float32"] == y).mean() >= 0.9 and (labels["bfloat16"] == y).mean() >= 0.9
  assert (labels["float32"] != labels["bfloat16"]).mean() <= 2 / 64
