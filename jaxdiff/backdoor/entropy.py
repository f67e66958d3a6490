"""Entropy-based detection of backdoored purifiers (DIFF2 §5.7, Figures 9–10).

Clean reference inputs are diffused all the way to t = T and reversed by the purifier φ, then classified by f:
a benign φ generates outputs spread over the classes, while a backdoored φ* pulls part of them toward the
adversarial regions its fine-tuning learned, so the histogram of predicted labels loses entropy. Each model is
measured in several trials; the trial entropies pass an IQR outlier filter and then a moving average, and a
model is flagged when their mean falls below a threshold (nats; ln C is the most a C-class histogram can have).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from jaxdiff.functional import jit_apply
from jaxdiff.metrics import predictions


def label_entropy(pred, num_classes):
  """Shannon entropy (nats) of the histogram of predicted labels ``pred`` [N] over ``num_classes``: ln C when
  the labels are spread evenly, 0 when every input gets one label."""
  counts = np.bincount(np.asarray(pred, np.int64).ravel(), minlength=num_classes).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def iqr_filter(values, k=1.5):
  """The values inside Tukey's fences [Q1 − k·IQR, Q3 + k·IQR], in their order."""
  v = np.asarray(values, np.float64)
  q1, q3 = np.percentile(v, [25, 75])
  lo, hi = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
  return v[(v >= lo) & (v <= hi)]


def moving_average(values, window=3):
  """Means of every ``window`` consecutive values (len − window + 1 of them); the overall mean when there are
  fewer values than ``window``."""
  v = np.asarray(values, np.float64)
  if len(v) < window:
    return v.mean(keepdims=True)
  return np.convolve(v, np.ones(window) / window, mode="valid")


def filter_entropies(raw, k=1.5, window=3):
  """§5.7's two filters on one model's trial entropies: IQR outliers out, then the moving average."""
  return moving_average(iqr_filter(raw, k), window)


def purified_label_entropies(logits, params, x_ref, key, *, trials, per_trial, num_classes, batch_size):
  """Label entropy (nats) per trial of ``logits(params, x, key)`` (a purified classifier diffusing to t = T;
  pixel inputs [0, 1]) on ``per_trial`` reference inputs per trial, taken from ``x_ref`` [N, H, W, C] in turn
  (cyclically when N < trials · per_trial), each trial with its own noise. Returns a list of ``trials`` floats."""
  f = functools.partial(jit_apply, logits, params)
  out = []
  for i in range(trials):
    idx = (i * per_trial + np.arange(per_trial)) % len(x_ref)
    pred = predictions(f, x_ref[idx], batch_size, jax.random.fold_in(key, i))
    out.append(label_entropy(pred, num_classes))
  return out


def calibrate_threshold(benign, backdoored):
  """The threshold (nats) that best separates per-model scores (lower = backdoored): the midpoint between the
  lowest benign and the highest backdoored score when they separate, else the midpoint that errs least."""
  benign, backdoored = np.sort(np.asarray(benign, float)), np.sort(np.asarray(backdoored, float))
  if benign.size == 0 or backdoored.size == 0:
    raise ValueError("calibration needs at least one benign and one backdoored model")
  cuts = np.unique(np.concatenate([benign, backdoored]))
  mids = np.concatenate([[cuts[0] - 1e-3], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1e-3]])
  errors = [(benign < m).sum() + (backdoored >= m).sum() for m in mids]
  best = np.flatnonzero(np.asarray(errors) == min(errors))
  return float(mids[best[len(best) // 2]])


def leave_one_out_flags(scores, truth):
  """Each model flagged with the threshold calibrated on all the others (an honest detection accuracy for a
  calibrated threshold). ``scores`` [M] lower = backdoored; ``truth`` [M] bools."""
  scores, truth = np.asarray(scores, float), np.asarray(truth, bool)
  flags = []
  for i in range(len(scores)):
    rest = np.arange(len(scores)) != i
    thr = calibrate_threshold(scores[rest & ~truth], scores[rest & truth])
    flags.append(bool(scores[i] < thr))
  return flags
