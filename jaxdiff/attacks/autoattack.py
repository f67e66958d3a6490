"""AutoAttack (Croce & Hein 2020): an ensemble run in sequence, each on the points still robust.

version 'standard': APGD-CE, APGD-T (targeted DLR over the top ``n_target_classes`` classes), FAB-T
(same targets), Square. version 'rand': APGD-CE and APGD-DLR with EOT over ``eot_iter`` draws of a
stochastic model. Robust accuracy after each attack is printed and returned in the report.

Each attack runs on the points still robust only, padded to a multiple of ⌈batch / 8⌉ (``compact_buckets``) so
that an attack compiles for at most 8 batch shapes: the points that fell cost nothing further, as in the
reference PyTorch code.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks.apgd import apgd
from jaxdiff.attacks.common import as_stochastic
from jaxdiff.attacks.fab import fab_t
from jaxdiff.attacks.square import square

# Compiled once per (logits_fn, static settings, shapes); ε and the weights (``params``) are traced.
_apgd = jax.jit(apgd, static_argnames=("logits_fn", "norm", "steps", "loss", "eot", "stochastic"))
_square = jax.jit(square, static_argnames=("logits_fn", "norm", "queries", "stochastic"))
_fab_t = jax.jit(fab_t, static_argnames=("logits_fn", "norm", "steps", "restarts", "stochastic"))
_apgd_t = lambda logits_fn, x, y, target, **kw: _apgd(logits_fn, x, y, target=target, **kw)
_logits = jax.jit(lambda logits_fn, x, key, stochastic, params: as_stochastic(logits_fn, stochastic, params)(x, key),
                  static_argnames=("logits_fn", "stochastic"))


def autoattack(logits_fn, x, y, *, key, eps, norm="linf", version="standard", steps=100,
               n_target_classes=9, square_queries=5000, eot_iter=20, stochastic=False, return_report=False,
               verbose=False, params=None, compact_buckets=8):
  """Returns x_adv (x's shape and dtype), and with ``return_report`` a dict of robust accuracy per attack.

  ``compact_buckets``: each attack runs on the robust points padded to a multiple of ⌈batch / compact_buckets⌉
  (``robust_subset``); where that is the whole batch, on the batch as it is (points that already fell are attacked
  again and their results dropped). 1: always the whole batch (one compiled shape; the behaviour, and with a given
  key the result, of jaxdiff before compaction).

  ``logits_fn`` must be hashable and stable across calls (attacks are jitted with it as a static
  argument): a function defined once, not a fresh lambda per batch — or, with ``params``, a pure
  ``logits_fn(params, x[, key])`` hashable by value, so every parameter set shares the compilations.
  """
  x = jnp.asarray(x)
  y = jnp.asarray(y, jnp.int32)
  dtype = x.dtype
  kp, key = jax.random.split(key)
  clean_logits = np.asarray(_logits(logits_fn, x, kp, stochastic=stochastic, params=params))  # one draw
  robust = np.argmax(clean_logits, -1) == np.asarray(y)
  x_adv = np.array(x, np.float32)
  report = {"clean": float(robust.mean())}
  eot = eot_iter if version == "rand" else 1
  if version == "standard":
    plan = ["apgd-ce", "apgd-t", "fab-t", "square"]
  elif version == "rand":
    plan = ["apgd-ce", "apgd-dlr"]
  else:
    raise ValueError(f"unknown AutoAttack version {version!r}; use 'standard' or 'rand'")

  def run(attack, *args, **kw):  # one attack on the robust points (padded); merges what it fooled
    idx, count = robust_subset(robust, compact_buckets)
    whole = len(idx) == len(robust)  # padded to the batch size anyway: attack the batch as it is, no gather
    if whole:
      idx = np.arange(len(robust))
    sub = lambda a: a if whole else a[idx]
    adv, fooled = attack(logits_fn, sub(x), sub(y), *map(sub, args), **kw)
    hit = np.asarray(fooled) & (robust if whole else np.arange(len(idx)) < count)  # not the fallen, not the padding
    x_adv[idx[hit]] = np.asarray(adv)[hit]
    robust[idx[hit]] = False

  def done(name):
    report[name] = float(robust.mean())
    if verbose:
      print(f"robust accuracy after {name}: {report[name]:.2%}", flush=True)

  common = dict(eps=eps, norm=norm, stochastic=stochastic, params=params)
  for i, name in enumerate(plan):
    k = jax.random.fold_in(key, i)
    if name in ("apgd-ce", "apgd-dlr") and robust.any():
      run(_apgd, key=k, steps=steps, loss="ce" if name == "apgd-ce" else "dlr", eot=eot, **common)
    elif name in ("apgd-t", "fab-t"):  # targets: the runner-up classes of the clean logits, in order
      order = np.argsort(-clean_logits, axis=1)
      for j in range(1, min(n_target_classes, clean_logits.shape[1] - 1) + 1):
        if not robust.any():
          break
        tgt, kj = jnp.asarray(order[:, j], jnp.int32), jax.random.fold_in(k, j)
        if name == "apgd-t":
          run(_apgd_t, tgt, key=kj, steps=steps, loss="dlr", eot=eot, **common)
        else:
          run(_fab_t, tgt, key=kj, steps=steps, **common)
    elif name == "square" and robust.any():
      run(_square, key=k, queries=square_queries, **common)
    done(name)
  out = jnp.asarray(x_adv, dtype)
  return (out, report) if return_report else out


def robust_subset(robust, buckets=8):
  """(indices, count): the ``count`` indices of the robust points, padded by repeating the first to the smallest
  multiple of ⌈n / buckets⌉ (at most n) so that the attacks see at most ``buckets`` batch shapes; the padding's
  results are dropped. ``robust``: bool [n] with at least one True."""
  n = len(robust)
  idx = np.flatnonzero(robust)
  step = -(-n // max(1, buckets))
  size = min(n, -(-len(idx) // step) * step)
  return np.concatenate([idx, np.full(size - len(idx), idx[0])]), len(idx)
