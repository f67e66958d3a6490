"""Projected gradient descent (Madry et al. 2018), ℓ∞ / ℓ2, targeted or not, with EOT."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.attacks.common import (ascent_direction, as_stochastic, cross_entropy, eot_value_and_grad,
                                    project, random_start)


def pgd(logits_fn, x, y, *, key, eps, steps, norm="linf", step_size=None, targeted=False, target=None,
        random_init=True, eot=1, stochastic=False, params=None):
  """Returns x_adv (x's shape and dtype) with ‖x_adv − x‖ ≤ eps and x_adv ∈ [0, 1].

  Untargeted: ascends CE on the true label ``y``. Targeted (``targeted=True``): descends CE to
  ``target`` (an int array; default class 0). ``eot`` averages gradients over that many keys of a
  stochastic ``logits_fn(x, key)``. Default step: 2.5·ε/steps (Madry et al.).
  """
  dtype = x.dtype
  x = jnp.asarray(x, jnp.float32)
  step_size = 2.5 * eps / steps if step_size is None else step_size
  f = as_stochastic(logits_fn, stochastic, params)
  tgt = (jnp.zeros_like(y) if target is None else jnp.asarray(target, jnp.int32)) if targeted else None

  def loss(z, k):
    logits = f(z, k)
    return (-cross_entropy(logits, tgt) if targeted else cross_entropy(logits, y)), logits

  k0, key = jax.random.split(key)
  x_adv = random_start(k0, x, eps, norm) if random_init else x

  def body(i, x_adv):
    _, _, g = eot_value_and_grad(loss, x_adv, jax.random.fold_in(key, i), eot)
    return project(x_adv + step_size * ascent_direction(g, norm), x, eps, norm)

  return jax.lax.fori_loop(0, steps, body, x_adv).astype(dtype)


pgd_jit = jax.jit(pgd, static_argnames=("logits_fn", "steps", "norm", "targeted", "random_init", "eot", "stochastic"))
"""``pgd`` compiled once per (logits_fn, static settings, shapes); pass the weights as ``params`` so every
parameter set of one architecture (a hashable ``logits_fn(params, x[, key])``) shares the compilation."""
