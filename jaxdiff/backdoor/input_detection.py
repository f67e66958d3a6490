"""Input-level backdoor detection: is this x_T a trigger? One interface for TERD, UFID and DisDet, a calibrated
threshold, and ``InputFilter`` for a service that runs someone else's model. Inputs x_T are model-space noise
[N, H, W, C]; every score is higher for an input more likely poisoned.

- TERD (Mo et al. 2024, input detection): log N(x; r̂, I) − log N(x; 0, I) with r̂ the model's reversed trigger
  (``terd.input_log_likelihood_ratio``; the paper's rule: poisoned when > 0).
- UFID (Guan et al. 2024): generate from x_T and ``copies`` perturbed copies x_T + s·ε_k; a trigger pulls them all to
  its target, so their generations stay alike. Score: the density of their similarity graph, the mean pairwise
  cosine of their embeddings.
- DisDet (Sui et al. 2024): a poisoned x_T = ε + r departs from N(0, I) in its value distribution. Score: the KL
  divergence of the histogram of x_T's values from the standard normal's bin masses (a model-free statistic;
  threshold from the discrepancy of clean noise).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxdiff.backdoor.inversion import cosine_matrix
from jaxdiff.backdoor.terd import input_log_likelihood_ratio

METHODS = ("terd", "ufid", "disdet")


def disdet_scores(x, bins=64, limit=4.0):
  """[N] KL(histogram of each input's values ‖ N(0, 1)'s masses of the same bins), nats: ``bins`` equal bins on
  [−limit, limit] plus the two tails. Near 0 for clean noise (O(bins / D) for D values per input)."""
  flat = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
  edges = jnp.linspace(-limit, limit, bins + 1)
  cdf = norm.cdf(edges)
  q = jnp.concatenate([cdf[:1], jnp.diff(cdf), 1.0 - cdf[-1:]])  # bins + 2 masses
  idx = jnp.searchsorted(edges, flat, side="right")  # 0: below −limit, bins + 1: above limit
  counts = jax.vmap(lambda i: jnp.zeros(bins + 2).at[i].add(1.0))(idx)
  p = counts / flat.shape[1]
  return jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0) / q), 0.0), axis=-1)


def ufid_scores(generate, encode, x, key, *, copies=8, scale=0.5):
  """[N] UFID's graph density of each input: ``generate(x_T [M, H, W, C], key)`` → pixel samples, ``encode(pixel)``
  → embeddings [M, D]; per input x, the mean off-diagonal cosine similarity among the embeddings of the
  generations from x and from ``copies`` − 1 copies x + scale·ε_k."""
  n = x.shape[0]
  k_pert, k_gen = jax.random.split(key)
  eps = jax.random.normal(k_pert, (n, copies - 1) + x.shape[1:])
  batch = jnp.concatenate([x[:, None], x[:, None] + scale * eps], axis=1).reshape((n * copies,) + x.shape[1:])
  z = encode(generate(batch, k_gen)).reshape(n, copies, -1)
  sims = jax.vmap(cosine_matrix)(z)
  return (jnp.sum(sims, axis=(1, 2)) - jnp.trace(sims, axis1=1, axis2=2)) / (copies * (copies - 1))


def input_detector(method, *, trigger=None, generate=None, encode=None, copies=8, scale=0.5, bins=64, limit=4.0):
  """``score(params, x_T, key) -> [N]`` of ``method``: "terd" needs the reversed ``trigger`` (model space
  [H, W, C]); "ufid" a ``generate(model_params, x_T, key)`` (pixel samples) and an ``encode(encoder_params, pixel)
  -> [M, D]``, and takes ``params`` = (model_params, encoder_params); "disdet" nothing. ``params`` is unused by
  "terd" and "disdet". Jitted; the weights are its argument, never constants."""
  if method == "terd":
    if trigger is None:
      raise ValueError("TERD's input detection needs the reversed trigger (terd.terd_invert's 'trigger')")
    r = jnp.asarray(trigger, jnp.float32)
    return jax.jit(lambda params, x, key: input_log_likelihood_ratio(x, r))
  if method == "ufid":
    if generate is None or encode is None:
      raise ValueError("UFID needs generate(model_params, x_T, key) and encode(encoder_params, pixel images)")
    return jax.jit(lambda params, x, key: ufid_scores(functools.partial(generate, params[0]),
                                                      functools.partial(encode, params[1]), x, key, copies=copies,
                                                      scale=scale))
  if method == "disdet":
    return jax.jit(lambda params, x, key: disdet_scores(x, bins, limit))
  raise ValueError(f"unknown input detector {method!r}; use one of {METHODS}")


def detect_inputs(model, params, noises, *, method, key=None, batch=256, **settings):
  """[N] scores (higher = more likely poisoned) of input noises x_T [N, H, W, C] (model space) for ``model`` with
  ``params`` under ``method`` (``input_detector``'s settings; ``model`` is carried for the caller's records — the
  detector's ``generate`` closes over the module, never over the weights). Batched by ``batch``."""
  del model
  return score_batches(input_detector(method, **settings), params, noises, key, batch)


def score_batches(score, params, noises, key=None, batch=256):
  """[N] scores of ``score`` (an ``input_detector`` function, built once and reused so it compiles once) over
  ``noises`` in batches of ``batch``, a key per batch."""
  key = jax.random.key(0) if key is None else key
  noises = jnp.asarray(noises, jnp.float32)
  return np.concatenate([np.asarray(score(params, noises[i:i + batch], jax.random.fold_in(key, i)))
                         for i in range(0, len(noises), batch)])


def calibrate_threshold(clean_scores, fpr=0.05):
  """The threshold that flags at most ``fpr`` of clean inputs: the (1 − fpr) quantile of their scores (flagged
  when score > threshold)."""
  s = np.sort(np.asarray(clean_scores, np.float64))
  if s.size == 0:
    raise ValueError("calibration needs clean scores")
  return float(np.quantile(s, 1.0 - fpr, method="higher"))


def auroc(clean_scores, poisoned_scores):
  """Area under the ROC curve of telling poisoned from clean by score (ties count ½): the probability that a
  poisoned input outscores a clean one."""
  c, p = np.asarray(clean_scores, np.float64), np.asarray(poisoned_scores, np.float64)
  return float(((p[:, None] > c[None]).sum() + 0.5 * (p[:, None] == c[None]).sum()) / (len(p) * len(c)))


def tpr_at_fpr(clean_scores, poisoned_scores, fpr=0.05):
  """Share of poisoned inputs flagged at the threshold that flags ``fpr`` of these clean inputs."""
  return float(np.mean(np.asarray(poisoned_scores) > calibrate_threshold(clean_scores, fpr)))


class InputFilter(NamedTuple):
  """A detector and its threshold for serving: ``keep, scores = filter(params, x_T, key)`` with ``keep`` [N] bool
  (False: refused as a likely trigger). ``score`` is ``input_detector``'s jitted function; build with
  ``InputFilter.calibrated`` to hold the false-positive rate on clean noise at ``fpr``."""
  score: Callable
  threshold: float
  method: str
  fpr: Any = None

  def __call__(self, params, x, key=None):
    key = jax.random.key(0) if key is None else key
    s = self.score(params, jnp.asarray(x, jnp.float32), key)
    return s <= self.threshold, s

  @classmethod
  def calibrated(cls, method, params, shape, key, *, fpr=0.05, n=1000, batch=256, **settings):
    """A filter whose threshold flags ``fpr`` of ``n`` fresh N(0, I) inputs of ``shape`` (H, W, C)."""
    score = input_detector(method, **settings)
    k_noise, k_score = jax.random.split(key)
    clean = jax.random.normal(k_noise, (n,) + tuple(shape))
    return cls(score, calibrate_threshold(score_batches(score, params, clean, k_score, batch), fpr), method, fpr)
