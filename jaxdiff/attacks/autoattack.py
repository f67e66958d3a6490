"""AutoAttack (Croce & Hein 2020): an ensemble run in sequence, each on the points still robust.

version 'standard': APGD-CE, APGD-T (targeted DLR over the top ``n_target_classes`` classes), FAB-T
(same targets), Square. version 'rand': APGD-CE and APGD-DLR with EOT over ``eot_iter`` draws of a
stochastic model. Robust accuracy after each attack is printed and returned in the report.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks.apgd import apgd
from jaxdiff.attacks.fab import fab_t
from jaxdiff.attacks.square import square

_STATIC = ("logits_fn", "eps", "norm", "steps", "loss", "eot", "stochastic", "queries")
_apgd = jax.jit(apgd, static_argnames=_STATIC[:-1])
_square = jax.jit(square, static_argnames=("logits_fn", "eps", "norm", "queries", "stochastic"))
_fab_t = jax.jit(fab_t, static_argnames=("logits_fn", "eps", "norm", "steps", "restarts", "stochastic"))


def _predict(logits_fn, x, key, stochastic):
  return jnp.argmax(logits_fn(x, key) if stochastic else logits_fn(x), -1)


def autoattack(logits_fn, x, y, *, key, eps, norm="linf", version="standard", steps=100,
               n_target_classes=9, square_queries=5000, eot_iter=20, stochastic=False, return_report=False,
               verbose=False):
  """Returns x_adv (x's shape and dtype), and with ``return_report`` a dict of robust accuracy per attack.

  ``logits_fn`` must be hashable and stable across calls (attacks are jitted with it as a static
  argument), e.g. a function defined once, not a fresh lambda per batch.
  """
  x = jnp.asarray(x)
  y = jnp.asarray(y, jnp.int32)
  dtype = x.dtype
  kp, key = jax.random.split(key)
  robust = np.asarray(_predict(logits_fn, x, kp, stochastic) == y)
  x_adv = np.array(x, np.float32)
  report = {"clean": float(robust.mean())}
  eot = eot_iter if version == "rand" else 1
  if version == "standard":
    plan = [("apgd-ce", None), ("apgd-t", None), ("fab-t", None), ("square", None)]
  elif version == "rand":
    plan = [("apgd-ce", None), ("apgd-dlr", None)]
  else:
    raise ValueError(f"unknown AutoAttack version {version!r}; use 'standard' or 'rand'")

  def merge(name, adv, fooled):
    nonlocal robust
    fooled = np.asarray(fooled) & robust
    x_adv[fooled] = np.asarray(adv)[fooled]
    robust = robust & ~fooled
    report[name] = float(robust.mean())
    if verbose:
      print(f"robust accuracy after {name}: {report[name]:.2%}", flush=True)

  for i, (name, _) in enumerate(plan):
    k = jax.random.fold_in(key, i)
    if not robust.any():
      report[name] = 0.0
      continue
    if name in ("apgd-ce", "apgd-dlr"):
      adv, fooled = _apgd(logits_fn, x, y, key=k, eps=eps, norm=norm, steps=steps,
                          loss="ce" if name == "apgd-ce" else "dlr", eot=eot, stochastic=stochastic)
      merge(name, adv, fooled)
    elif name in ("apgd-t", "fab-t"):  # targets: the runner-up classes of the clean logits, in order
      logits = logits_fn(x, kp) if stochastic else logits_fn(x)
      order = np.argsort(-np.asarray(logits), axis=1)
      for j in range(1, min(n_target_classes, logits.shape[1] - 1) + 1):
        tgt, kj = jnp.asarray(order[:, j], jnp.int32), jax.random.fold_in(k, j)
        if name == "apgd-t":
          adv, fooled = _apgd(logits_fn, x, y, key=kj, eps=eps, norm=norm, steps=steps, loss="dlr", target=tgt,
                              eot=eot, stochastic=stochastic)
        else:
          adv, fooled = _fab_t(logits_fn, x, y, tgt, key=kj, eps=eps, norm=norm, steps=steps,
                               stochastic=stochastic)
        merge(name, adv, fooled)
    elif name == "square":
      adv, fooled = _square(logits_fn, x, y, key=k, eps=eps, norm=norm, queries=square_queries,
                            stochastic=stochastic)
      merge(name, adv, fooled)
  out = jnp.asarray(x_adv, dtype)
  return (out, report) if return_report else out
