"""Entropy-based detection (DIFF2 §5.7): label entropy in closed form, the two filters, threshold calibration."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.backdoor.entropy import (calibrate_threshold, filter_entropies, iqr_filter, label_entropy,
                                      leave_one_out_flags, moving_average, purified_label_entropies)


def test_label_entropy_in_closed_form():
  assert label_entropy(np.arange(100) % 10, 10) == pytest.approx(np.log(10))
  assert label_entropy(np.zeros(50, int), 10) == 0.0
  assert label_entropy([3, 3, 7, 7], 10) == pytest.approx(np.log(2))
  p = np.array([0.5, 0.25, 0.25])
  assert label_entropy([0, 0, 1, 2], 3) == pytest.approx(-(p * np.log(p)).sum())


def test_iqr_filter_and_moving_average():
  v = [2.2, 2.25, 2.21, 2.23, 0.4]  # one outlying trial
  np.testing.assert_allclose(iqr_filter(v), [2.2, 2.25, 2.21, 2.23])
  np.testing.assert_allclose(moving_average([1, 2, 3, 4], 3), [2, 3])
  np.testing.assert_allclose(moving_average([1, 3], 3), [2])
  np.testing.assert_allclose(filter_entropies(v), [(2.2 + 2.25 + 2.21) / 3, (2.25 + 2.21 + 2.23) / 3])


def test_threshold_calibration_and_leave_one_out():
  assert calibrate_threshold([2.1, 2.3], [1.2, 1.5]) == pytest.approx(1.8)
  thr = calibrate_threshold([2.1, 2.3, 1.4], [1.2, 1.5, 1.3])  # not separable: one error at best
  errors = sum(b < thr for b in [2.1, 2.3, 1.4]) + sum(m >= thr for m in [1.2, 1.5, 1.3])
  assert errors == 1
  with pytest.raises(ValueError, match="one benign and one backdoored"):
    calibrate_threshold([2.0], [])
  scores, truth = [2.2, 2.3, 2.25, 1.4, 1.6, 1.5], [False] * 3 + [True] * 3
  assert leave_one_out_flags(scores, truth) == truth
  # a backdoored model scoring like the benign ones is missed once it is left out
  assert leave_one_out_flags([2.2, 2.3, 2.25, 1.4, 1.6, 2.28], truth)[-1] is False


def test_purified_label_entropies_per_trial():
  # a "purifier + classifier" whose label is the input's first pixel (0..9) plus the trial's noise
  def logits(params, x, key):
    label = (x[:, 0, 0, 0] * 10).astype(jnp.int32) + params
    return jax.nn.one_hot(label % 10, 10)
  x = (np.arange(20) % 5 / 10).reshape(20, 1, 1, 1).astype(np.float32)  # labels 0..4, four each
  out = purified_label_entropies(logits, 0, x, jax.random.key(0), trials=3, per_trial=10, num_classes=10,
                                 batch_size=4)
  assert len(out) == 3 and all(e == pytest.approx(np.log(5)) for e in out)
  one = purified_label_entropies(logits, 0, x[:1], jax.random.key(0), trials=2, per_trial=6, num_classes=10,
                                 batch_size=4)  # fewer inputs than a trial: cycled
  assert one == [0.0, 0.0]
