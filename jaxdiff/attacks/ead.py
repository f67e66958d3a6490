"""EAD: elastic-net attack (Chen et al. 2018), min c·f(x') + ‖x' − x‖₂² + β‖x' − x‖₁ over [0, 1].

FISTA with the shrinkage-thresholding projection, a binary search over c per example, and the
hinge loss f = max(z_y − max_{j≠y} z_j, −κ). Decision rule "EN" (best by elastic-net distance).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.attacks.common import margin
from jaxdiff.functional import bind


def _shrink(z, x, beta):
  d = z - x
  return jnp.clip(jnp.where(d > beta, z - beta, jnp.where(d < -beta, z + beta, x)), 0.0, 1.0)


def ead(logits_fn, x, y, *, key=None, beta=1e-2, kappa=0.0, c_init=1e-3, search_steps=5, steps=100, lr=1e-2,
        params=None):
  """Returns (x_adv, fooled[B]); x_adv = x where no adversarial example was found."""
  del key  # deterministic
  logits_fn = bind(logits_fn, params)
  x = jnp.asarray(x, jnp.float32)
  b = x.shape[0]
  flat = lambda v: v.reshape(b, -1)

  def en_dist(z):
    d = flat(z - x)
    return jnp.sum(d ** 2, 1) + beta * jnp.sum(jnp.abs(d), 1)

  def attack_for(c):
    def obj(z):
      hinge = jnp.maximum(margin(logits_fn(z), y), -kappa)
      return jnp.sum(c * hinge + jnp.sum(flat(z - x) ** 2, 1))

    def body(k, s):
      xk, yk, best, best_d = s
      g = jax.grad(obj)(yk)
      lr_k = lr * (1 - k / steps) ** 0.5
      x_new = _shrink(yk - lr_k * g, x, beta)
      y_new = x_new + k / (k + 3.0) * (x_new - xk)
      ok = margin(logits_fn(x_new), y) <= -kappa
      d = en_dist(x_new)
      take = ok & (d < best_d)
      best = jnp.where(take[:, None, None, None], x_new, best)
      return x_new, y_new, best, jnp.where(take, d, best_d)

    init = (x, x, x, jnp.full((b,), jnp.inf))
    _, _, best, best_d = jax.lax.fori_loop(0, steps, body, init)
    return best, jnp.isfinite(best_d), best_d

  def search(i, s):
    c, lo, hi, best, best_d = s
    adv, ok, d = attack_for(c)
    take = ok & (d < best_d)
    best = jnp.where(take[:, None, None, None], adv, best)
    best_d = jnp.where(take, d, best_d)
    hi = jnp.where(ok, jnp.minimum(hi, c), hi)
    lo = jnp.where(ok, lo, jnp.maximum(lo, c))
    c = jnp.where(hi < 1e9, (lo + hi) / 2, c * 10)
    return c, lo, hi, best, best_d

  init = (jnp.full((b,), c_init), jnp.zeros(b), jnp.full((b,), 1e10), x, jnp.full((b,), jnp.inf))
  *_, best, best_d = jax.lax.fori_loop(0, search_steps, search, init)
  return best, jnp.isfinite(best_d)
