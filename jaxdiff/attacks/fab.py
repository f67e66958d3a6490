"""FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
attack"), the targeted FAB of AutoAttack, ℓ∞ and ℓ2, pixel space [0, 1].

Each step linearises the target decision boundary g(z) = z_y(z) − z_t(z) at the current iterate,
projects both the iterate and the original point onto that hyperplane ∩ [0, 1] box (exact minimal-norm
projection), moves to a biased combination of the two (weight α ≤ α_max towards the original, overshoot
η), and after every adversarial iterate steps back towards x by β. It returns the closest adversarial
point found, kept only where it lies within ε.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.attacks.common import as_stochastic, random_start


def _smallest_level(a, beta, c):
  """Smallest λ ≥ 0 with Σ_i a_i·min(λ, β_i) ≥ c for flat a, β ≥ 0 (largest β_i when infeasible).

  The left side is piecewise linear and non-decreasing in λ with kinks at the β_i: evaluate it at the
  sorted kinks, find the segment that reaches c, solve the linear piece.
  """
  order = jnp.argsort(beta)
  b, a_s = beta[order], a[order]
  clipped = jnp.cumsum(a_s * b)               # Σ_{j ≤ k} a_j β_j
  free = jnp.sum(a) - jnp.cumsum(a_s)         # Σ_{j > k} a_j
  level = clipped + b * free                  # value at λ = β_(k)
  k = jnp.searchsorted(level, c)
  c_prev = jnp.where(k > 0, clipped[jnp.maximum(k - 1, 0)], 0.0)
  f_prev = jnp.where(k > 0, free[jnp.maximum(k - 1, 0)], jnp.sum(a))
  lam = (c - c_prev) / jnp.maximum(f_prev, 1e-30)
  return jnp.where(k >= b.shape[0], b[-1], jnp.maximum(lam, 0.0))


def project_hyperplane_box(x0, w, c, norm):
  """Minimal-‖δ‖ δ with w·δ = c and x0 + δ ∈ [0, 1] (flat vectors of one example); where no such δ
  exists, the box point that gets closest (w·δ maximal in the direction of c)."""
  s = jnp.where(c < 0, -1.0, 1.0)
  w, c = w * s, c * s
  bound = jnp.where(w > 0, 1.0 - x0, -x0)     # how far each coordinate may move in the ascent direction
  if norm == "linf":
    lam = _smallest_level(jnp.abs(w), jnp.abs(bound), c)
    return jnp.sign(w) * jnp.minimum(lam, jnp.abs(bound))
  if norm == "l2":
    beta = jnp.where(w != 0, bound / jnp.where(w != 0, w, 1.0), 0.0)
    lam = _smallest_level(w * w, beta, c)
    return w * jnp.minimum(lam, beta)
  raise ValueError(f"FAB supports norm 'linf' or 'l2', not {norm!r}")


def _dist(d, norm):
  d = d.reshape(d.shape[0], -1)
  return jnp.max(jnp.abs(d), 1) if norm == "linf" else jnp.sqrt(jnp.sum(d * d, 1))


def fab_t(logits_fn, x, y, target, *, key, eps, norm="linf", steps=100, restarts=1, alpha_max=0.1, eta=1.05,
          beta=0.9, stochastic=False, params=None):
  """Targeted FAB towards ``target`` [B]. Returns (x_adv, fooled[B]); x_adv = x where nothing within ε
  was found. Success means misclassified (≠ y), as AutoAttack counts robust accuracy."""
  x = jnp.asarray(x, jnp.float32)
  f = as_stochastic(logits_fn, stochastic, params)
  shape, b = x.shape, x.shape[0]
  flat = lambda v: v.reshape(b, -1)
  bc = lambda v: v.reshape((b,) + (1,) * (x.ndim - 1))
  project = jax.vmap(lambda z, w, c: project_hyperplane_box(z, w, c, norm))

  def gap(z, k):  # g = z_y − z_t per example, with the logits
    lg = f(z, k).astype(jnp.float32)
    g = jnp.take_along_axis(lg, y[:, None], 1)[:, 0] - jnp.take_along_axis(lg, target[:, None], 1)[:, 0]
    return jnp.sum(g), (g, lg)

  def step(i, s, k_run):
    x_cur, x_best, d_best = s
    k1, k2 = jax.random.split(jax.random.fold_in(k_run, i))
    grad, (g, _) = jax.grad(gap, has_aux=True)(x_cur, k1)
    w = flat(grad)
    d_cur = project(flat(x_cur), w, -g)
    d_orig = project(flat(x), w, -(g + jnp.sum(w * flat(x - x_cur), 1)))
    n_cur, n_orig = _dist(d_cur, norm), _dist(d_orig, norm)
    a = jnp.clip(n_cur / jnp.maximum(n_cur + n_orig, 1e-12), 0.0, alpha_max)[:, None]
    x_new = jnp.clip((1 - a) * (flat(x_cur) + eta * d_cur) + a * (flat(x) + eta * d_orig), 0.0, 1.0)
    x_new = x_new.reshape(shape)
    adv = jnp.argmax(f(x_new, k2), -1) != y
    dist = _dist(x_new - x, norm)
    better = adv & (dist < d_best)
    x_best = jnp.where(bc(better), x_new, x_best)
    d_best = jnp.where(better, dist, d_best)
    x_cur = jnp.where(bc(adv), (1 - beta) * x + beta * x_new, x_new)
    return x_cur, x_best, d_best

  x_best, d_best = x, jnp.full((b,), jnp.inf)
  for r in range(restarts):  # restart 0 from x, later ones from a random point within ½·min(best, ε)
    k_run = jax.random.fold_in(key, r)
    x0 = x
    if r:
      radius = 0.5 * jnp.minimum(d_best, eps)
      u = random_start(jax.random.fold_in(k_run, steps), jnp.full_like(x, 0.5), 0.5, norm, l2_radius="sphere") - 0.5
      x0 = jnp.clip(x + bc(radius / jnp.maximum(_dist(u, norm), 1e-12)) * u, 0.0, 1.0)
    _, x_best, d_best = jax.lax.fori_loop(0, steps, lambda i, s: step(i, s, k_run), (x0, x_best, d_best))
  fooled = d_best <= eps
  return jnp.where(bc(fooled), x_best, x), fooled
