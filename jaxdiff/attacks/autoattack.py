"""AutoAttack (Croce & Hein 2020): an ensemble run in sequence, each on the points still robust.

version 'standard': APGD-CE, APGD-T (targeted DLR over the top ``n_target_classes`` classes), FAB-T
(same targets), Square. version 'rand': APGD-CE and APGD-DLR with EOT over ``eot_iter`` draws of a
stochastic model. Robust accuracy after each attack is printed and returned in the report.
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
_logits = jax.jit(lambda logits_fn, x, key, stochastic, params: as_stochastic(logits_fn, stochastic, params)(x, key),
                  static_argnames=("logits_fn", "stochastic"))


def autoattack(logits_fn, x, y, *, key, eps, norm="linf", version="standard", steps=100,
               n_target_classes=9, square_queries=5000, eot_iter=20, stochastic=False, return_report=False,
               verbose=False, params=None):
  """Returns x_adv (x's shape and dtype), and with ``return_report`` a dict of robust accuracy per attack.

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

  def merge(name, adv, fooled):
    nonlocal robust
    fooled = np.asarray(fooled) & robust
    x_adv[fooled] = np.asarray(adv)[fooled]
    robust = robust & ~fooled
    report[name] = float(robust.mean())
    if verbose:
      print(f"robust accuracy after {name}: {report[name]:.2%}", flush=True)

  common = dict(eps=eps, norm=norm, stochastic=stochastic, params=params)
  for i, name in enumerate(plan):
    k = jax.random.fold_in(key, i)
    if not robust.any():
      report[name] = 0.0
      continue
    if name in ("apgd-ce", "apgd-dlr"):
      adv, fooled = _apgd(logits_fn, x, y, key=k, steps=steps, loss="ce" if name == "apgd-ce" else "dlr", eot=eot,
                          **common)
      merge(name, adv, fooled)
    elif name in ("apgd-t", "fab-t"):  # targets: the runner-up classes of the clean logits, in order
      order = np.argsort(-clean_logits, axis=1)
      for j in range(1, min(n_target_classes, clean_logits.shape[1] - 1) + 1):
        tgt, kj = jnp.asarray(order[:, j], jnp.int32), jax.random.fold_in(k, j)
        if name == "apgd-t":
          adv, fooled = _apgd(logits_fn, x, y, key=kj, steps=steps, loss="dlr", target=tgt, eot=eot, **common)
        else:
          adv, fooled = _fab_t(logits_fn, x, y, tgt, key=kj, steps=steps, **common)
        merge(name, adv, fooled)
    elif name == "square":
      adv, fooled = _square(logits_fn, x, y, key=k, queries=square_queries, **common)
      merge(name, adv, fooled)
  out = jnp.asarray(x_adv, dtype)
  return (out, report) if return_report else out
