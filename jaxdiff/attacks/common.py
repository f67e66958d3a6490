"""Shared pieces of the attacks: projections onto the ε-ball ∩ [0, 1] box, losses, random starts.

All attacks work in pixel space [0, 1] on NHWC batches. ``logits_fn(x)`` maps a batch to logits;
a stochastic model (e.g. a purifier) is passed as ``logits_fn(x, key)`` with ``stochastic=True``. With
``params`` (weights as an argument, see ``jaxdiff.functional``) the model is ``logits_fn(params, x[, key])``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.functional import bind

NORMS = ("linf", "l2")


def _flat_norm(v):
  """Per-example ℓ2 norm of a batch (exact: no ε inside the root)."""
  return jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1))


def _bcast(v, x):
  return v.reshape((-1,) + (1,) * (x.ndim - 1))


def project(x_adv, x, eps, norm):
  """Projects onto {‖δ‖ ≤ ε} then the [0, 1] box (exact for ℓ∞; the usual approximation for ℓ2)."""
  d = x_adv - x
  if norm == "linf":
    d = jnp.clip(d, -eps, eps)
  elif norm == "l2":
    d = d * _bcast(jnp.minimum(1.0, eps / (_flat_norm(d) + 1e-12)), d)
  else:
    raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")
  return jnp.clip(x + d, 0.0, 1.0)


def ascent_direction(g, norm):
  """sign(g) for ℓ∞; g/(‖g‖ + 1e-12) for ℓ2 (unit length unless g ≈ 0, as the reference implementations)."""
  if norm == "linf":
    return jnp.sign(g)
  return g / _bcast(_flat_norm(g) + 1e-12, g)


def random_start(key, x, eps, norm, l2_radius="uniform"):
  """x + δ clipped to the box: δ ~ U[−ε, ε] per pixel (ℓ∞); for ℓ2 a random direction with radius r·ε,
  r ~ U[0, 1] (``l2_radius='uniform'``, torchattacks' PGDL2) or r = 1 (``'sphere'``, AutoAttack's APGD)."""
  if norm == "linf":
    d = jax.random.uniform(key, x.shape, minval=-eps, maxval=eps)
  else:
    d = jax.random.normal(key, x.shape)
    r = jax.random.uniform(jax.random.fold_in(key, 1), (x.shape[0],)) if l2_radius == "uniform" else 1.0
    d = d / _bcast(_flat_norm(d) + 1e-12, d) * _bcast(r * eps * jnp.ones(x.shape[0]), d)
  return jnp.clip(x + d, 0.0, 1.0)


def cross_entropy(logits, y):
  """Per-example cross-entropy [B] of logits [B, K] against int labels [B], in float32."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.take_along_axis(logp, y[:, None], 1)[:, 0]


def dlr_loss(logits, y, target=None):
  """Difference-of-logits ratio (Croce & Hein 2020); targeted when ``target`` is given."""
  z = logits.astype(jnp.float32)
  zs = jnp.sort(z, axis=1)
  zy = jnp.take_along_axis(z, y[:, None], 1)[:, 0]
  if target is None:
    top_other = jnp.where(jnp.argmax(z, 1) == y, zs[:, -2], zs[:, -1])
    return -(zy - top_other) / (zs[:, -1] - zs[:, -3] + 1e-12)
  zt = jnp.take_along_axis(z, target[:, None], 1)[:, 0]
  return -(zy - zt) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


def margin(logits, y):
  """z_y − max_{j≠y} z_j: negative iff misclassified."""
  z = logits.astype(jnp.float32)
  zy = jnp.take_along_axis(z, y[:, None], 1)[:, 0]
  return zy - jnp.max(jnp.where(jax.nn.one_hot(y, z.shape[1], dtype=bool), -jnp.inf, z), 1)


def as_stochastic(logits_fn, stochastic, params=None):
  """Uniform signature f(x, key) for deterministic and stochastic models, with ``params`` bound."""
  f = bind(logits_fn, params)
  return f if stochastic else (lambda x, key: f(x))


def eot_value_and_grad(loss_fn, x, key, eot):
  """Mean over ``eot`` keys of (per-example loss, aux) and the gradient of the summed loss."""
  def one(k):
    (l, aux), g = jax.value_and_grad(lambda z: _sum_aux(loss_fn(z, k)), has_aux=True)(x)
    return aux, g
  if eot == 1:
    (lv, logits), g = one(key)
    return lv, logits, g
  (lv, logits), g = jax.lax.map(one, jax.random.split(key, eot))
  return lv.mean(0), logits.mean(0), g.mean(0)


def _sum_aux(out):
  lv, logits = out
  return jnp.sum(lv), (lv, logits)
