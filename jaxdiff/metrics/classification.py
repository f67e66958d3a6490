"""Classification metrics: predictions in batches, accuracy, attack success rate, worst case over attacks."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdiff.batching import map_batches


def predictions(logits_fn, x, batch, key=None):
  """argmax labels [N] of ``logits_fn(x)`` — or of ``logits_fn(x, fold_in(key, i))`` for a stochastic one
  (e.g. f∘φ), i the batch's first row — over ``x`` (pixel space) in batches."""
  return map_batches(lambda *a: jnp.argmax(logits_fn(*a), -1), (x,), batch, key=key)


def accuracy(logits_fn, x, y, batch, key=None):
  """Top-1 accuracy of ``logits_fn`` on (x, y); see ``predictions``."""
  return float(np.mean(predictions(logits_fn, x, batch, key) == np.asarray(y)))


def attack_success_rate(pred, y, *, targeted, target_class=0):
  """ASR (DIFF2 §5): fraction of trigger inputs misclassified (untargeted), or classified as the target
  class y* among inputs whose label is not y* (targeted)."""
  pred, y = np.asarray(pred), np.asarray(y)
  if targeted:
    keep = y != target_class
    return float(np.mean(pred[keep] == target_class)) if keep.any() else 0.0
  return float(np.mean(pred != y))


def worst_case_accuracy(correct_per_attack):
  """Per-input worst case over attacks: the fraction of inputs every attack left correctly classified."""
  correct = np.stack([np.asarray(c, bool) for c in correct_per_attack])
  return float(np.mean(np.all(correct, axis=0)))
