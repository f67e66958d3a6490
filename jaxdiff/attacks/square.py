"""Square attack (Andriushchenko et al. 2020), ℓ∞ and ℓ2: score-based random search, no gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.attacks.common import as_stochastic, margin, project


def _p_schedule(it, n_queries, p_init):
  """Fraction of pixels changed, halved at the published iteration milestones (for 10k queries)."""
  it = it * 10000 / n_queries
  bounds = jnp.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
  return p_init / 2.0 ** jnp.sum(it > bounds)


def square(logits_fn, x, y, *, key, eps, norm="linf", queries=5000, p_init=0.8, stochastic=False):
  """Returns (x_adv, fooled[B]). Minimises the margin z_y − max_{j≠y} z_j; accepts improving squares."""
  x = jnp.asarray(x, jnp.float32)
  f = as_stochastic(logits_fn, stochastic)
  b, h, w, c = x.shape
  k0, key = jax.random.split(key)
  if norm == "linf":  # vertical stripes of ±ε
    x0 = project(x + eps * jax.random.choice(k0, jnp.array([-1.0, 1.0]), (b, 1, w, c)), x, eps, norm)
  else:
    x0 = project(x + eps / jnp.sqrt(h * w * c) * jax.random.choice(k0, jnp.array([-1.0, 1.0]), x.shape),
                 x, eps, norm)
  m0 = margin(f(x0, jax.random.fold_in(key, 0)), y)
  ii, jj = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]

  def body(it, s):
    x_cur, m_cur = s
    kk = jax.random.fold_in(key, it)
    k1, k2, k3, k4 = jax.random.split(kk, 4)
    p = _p_schedule(it, queries, p_init)
    size = jnp.clip(jnp.round(jnp.sqrt(p * h * w)), 1, h - 1).astype(jnp.int32)
    r = jax.random.randint(k1, (b, 1, 1, 1), 0, h - size + 1)
    q = jax.random.randint(k2, (b, 1, 1, 1), 0, w - size + 1)
    win = (ii >= r) & (ii < r + size) & (jj >= q) & (jj < q + size)
    if norm == "linf":
      val = x + eps * jax.random.choice(k3, jnp.array([-1.0, 1.0]), (b, 1, 1, c))
      cand = jnp.where(win, val, x_cur)
    else:  # simplified ℓ2 proposal: a ±ε/(2s) bump on the square, then back onto the ℓ2 ball
      bump = jax.random.choice(k3, jnp.array([-1.0, 1.0]), (b, 1, 1, c)) * win
      cand = x_cur + bump * eps / (2.0 * size.astype(jnp.float32))
    cand = project(cand, x, eps, norm)
    m_new = margin(f(cand, k4), y)
    better = (m_new < m_cur) & (m_cur > 0)
    return jnp.where(better[:, None, None, None], cand, x_cur), jnp.where(better, m_new, m_cur)

  x_adv, m = jax.lax.fori_loop(1, queries, body, (x0, m0))
  return x_adv, m < 0
