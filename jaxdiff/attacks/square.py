"""Square attack (Andriushchenko et al. 2020), ℓ∞ and ℓ2: score-based random search, no gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks.common import as_stochastic, margin, project


def _level(it, n_queries):
  """How many of the published milestones (for 10k queries, rescaled) iteration ``it`` has passed."""
  it = it * 10000 / n_queries
  return jnp.sum(it > jnp.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]))


def _p_schedule(it, n_queries, p_init):
  """Fraction of pixels changed, halved at each milestone."""
  return p_init / 2.0 ** _level(it, n_queries)


def _eta_rectangles(h, w):
  """Nested rectangles weighted 1/(k+1)² around the centre, unit ℓ2 norm (reference ℓ2 Square)."""
  d = np.zeros((h, w))
  ci, cj = h // 2, w // 2
  for k in range(max(h // 2 + 1, w // 2 + 1)):
    d[max(ci - k, 0):min(ci + k + 1, h), max(cj - k, 0):min(cj + k + 1, w)] += 1.0 / (k + 1) ** 2
  return d / np.sqrt(np.sum(d ** 2))


def meta_pseudo_gaussian(s):
  """s×s update of the ℓ2 Square attack: +rectangles on the top half, −rectangles on the bottom half."""
  d = np.zeros((s, s))
  d[:s // 2] = _eta_rectangles(s // 2, s)
  d[s // 2:] = -_eta_rectangles(s - s // 2, s)
  return d / np.sqrt(np.sum(d ** 2))


def _l2_window_sizes(n_queries, h, w, p_init):
  """Window side per p-schedule level: max(round(√(p·H·W)), 3), made odd, at most the image side."""
  levels = [p_init / 2.0 ** k for k in range(10)]
  sizes = []
  for p in levels:
    s = max(int(round(np.sqrt(p * h * w))), 3)
    s = s + 1 if s % 2 == 0 else s
    sizes.append(min(s, h, w))
  return np.array(sizes)


def _l2_init(key, x, eps):
  """Tiles of ±pseudo-Gaussian patterns (random sign per tile and channel), scaled onto the ε-sphere."""
  b, h, w, c = x.shape
  s = max(h // 5, 3)
  n_i, n_j = h // s, w // s
  tile = jnp.asarray(meta_pseudo_gaussian(s), jnp.float32)
  signs = jax.random.choice(key, jnp.array([-1.0, 1.0]), (b, n_i, n_j, c))
  d = jnp.einsum("bijc,uv->biujvc", signs, tile).reshape(b, n_i * s, n_j * s, c)
  oi, oj = (h - n_i * s) // 2, (w - n_j * s) // 2
  d = jnp.pad(d, ((0, 0), (oi, h - n_i * s - oi), (oj, w - n_j * s - oj), (0, 0)))
  return jnp.clip(x + eps * _unit(d), 0.0, 1.0)


def _unit(d):
  return d / jnp.sqrt(jnp.sum(d ** 2, axis=(1, 2, 3), keepdims=True) + 1e-24)


def square(logits_fn, x, y, *, key, eps, norm="linf", queries=5000, p_init=0.8, stochastic=False, params=None):
  """Returns (x_adv, fooled[B]). Minimises the margin z_y − max_{j≠y} z_j; accepts improving squares.

  ℓ∞: each proposal resets a random s×s window to x ± ε (one sign per channel). ℓ2 (the reference
  algorithm): a pseudo-Gaussian bump on window 1 takes over the perturbation mass of windows 1 and 2
  plus the unused budget ε² − ‖δ‖², window 2 is zeroed, and the result is rescaled onto the ε-sphere.
  ``p_init`` (fraction of pixels in a window at the start) is AutoAttack's 0.8 for both norms.
  """
  x = jnp.asarray(x, jnp.float32)
  f = as_stochastic(logits_fn, stochastic, params)
  b, h, w, c = x.shape
  if norm == "l2" and h != w:
    raise ValueError(f"ℓ2 Square needs square images, got {h}×{w}")
  k0, key = jax.random.split(key)
  if norm == "linf":  # vertical stripes of ±ε
    x0 = project(x + eps * jax.random.choice(k0, jnp.array([-1.0, 1.0]), (b, 1, w, c)), x, eps, norm)
  else:
    x0 = project(_l2_init(k0, x, eps), x, eps, norm)
  m0 = margin(f(x0, jax.random.fold_in(key, 0)), y)
  ii, jj = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]
  if norm == "l2":
    sizes = _l2_window_sizes(queries, h, w, p_init)
    pats = np.zeros((len(sizes), h, w), np.float32)
    for k, s in enumerate(sizes):
      pats[k, :s, :s] = meta_pseudo_gaussian(int(s))
    sizes, pats = jnp.asarray(sizes), jnp.asarray(pats)

  def window(k, size):
    r = jax.random.randint(k, (b, 1, 1, 1), 0, h - size + 1)
    q = jax.random.randint(jax.random.fold_in(k, 1), (b, 1, 1, 1), 0, w - size + 1)
    return (ii >= r) & (ii < r + size) & (jj >= q) & (jj < q + size), r, q

  def l2_proposal(x_cur, it, k1, k2, k3):
    level = _level(it, queries)
    size = sizes[level]
    win1, r, q = window(k1, size)
    win2, _, _ = window(k2, size)
    kt, ks = jax.random.split(k3)
    pat = pats[level]
    pat = jnp.where(jax.random.bernoulli(kt, 0.5, (b, 1, 1)), pat[None], pat.T[None])
    rows, cols = jnp.clip(ii[..., 0] - r[..., 0], 0, h - 1), jnp.clip(jj[..., 0] - q[..., 0], 0, w - 1)
    bump = pat[jnp.arange(b)[:, None, None], rows, cols][..., None] * win1
    bump = bump * jax.random.choice(ks, jnp.array([-1.0, 1.0]), (b, 1, 1, c))
    delta = x_cur - x
    sq = lambda v: jnp.sum(v ** 2, axis=(1, 2), keepdims=True)        # per image and channel
    n_img2 = jnp.sum(delta ** 2, axis=(1, 2, 3), keepdims=True)
    both = win1 | win2
    new = bump + delta * win1 / (jnp.sqrt(sq(delta * win1)) + 1e-12)
    new = new / jnp.sqrt(sq(new) + 1e-24) * jnp.sqrt(jnp.maximum(eps ** 2 - n_img2, 0.0) / c + sq(delta * both))
    delta = jnp.where(win1, new, jnp.where(win2, 0.0, delta))
    return x + eps * _unit(delta)

  def body(it, s):
    x_cur, m_cur = s
    kk = jax.random.fold_in(key, it)
    k1, k2, k3, k4 = jax.random.split(kk, 4)
    if norm == "linf":
      p = _p_schedule(it, queries, p_init)
      size = jnp.clip(jnp.round(jnp.sqrt(p * h * w)), 1, h - 1).astype(jnp.int32)
      win, _, _ = window(k1, size)
      cand = jnp.where(win, x + eps * jax.random.choice(k3, jnp.array([-1.0, 1.0]), (b, 1, 1, c)), x_cur)
    else:
      cand = l2_proposal(x_cur, it, k1, k2, k3)
    cand = project(cand, x, eps, norm)
    m_new = margin(f(cand, k4), y)
    better = (m_new < m_cur) & (m_cur > 0)
    return jnp.where(better[:, None, None, None], cand, x_cur), jnp.where(better, m_new, m_cur)

  x_adv, m = jax.lax.fori_loop(1, queries, body, (x0, m0))
  return x_adv, m < 0
