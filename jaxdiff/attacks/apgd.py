"""Auto-PGD (Croce & Hein 2020): step-size halving at checkpoints, momentum 0.75; CE or targeted DLR."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.attacks.common import (ascent_direction, as_stochastic, cross_entropy, dlr_loss,
                                    eot_value_and_grad, project, random_start)


def checkpoints(n_iter):
  """Iterations w_j where η may be halved: w_1 = 0.22n, gaps shrinking by 0.03n down to 0.06n.

  This is p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) of the paper in the reference code's
  integer arithmetic (so n = 100 gives 22, 41, 57, 70, 80, 87, 93, 99).
  """
  gap, dec, floor = max(int(0.22 * n_iter), 1), max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
  out, w = [], gap
  while w < n_iter:
    out.append(w)
    gap = max(gap - dec, floor)
    w += gap
  return out


def halve_step_size(n_increased, window, rho, reduced_last_time, best_at_last_checkpoint, best):
  """At a checkpoint (Croce & Hein 2020, §3.2): halve η where at most ρ·window of the steps since the last
  checkpoint increased the loss (condition 1, ``<=`` as the reference code), or where η was not halved last
  time and the best loss has not improved since (condition 2)."""
  return (n_increased <= rho * window) | (~reduced_last_time & (best_at_last_checkpoint >= best))


def apgd(logits_fn, x, y, *, key, eps, norm="linf", steps=100, loss="ce", target=None, rho=0.75, eot=1,
         stochastic=False, params=None):
  """Returns (x_adv, fooled[B]). Maximises CE (``loss='ce'``) or DLR, targeted DLR when ``target``."""
  x = jnp.asarray(x, jnp.float32)
  f = as_stochastic(logits_fn, stochastic, params)

  def objective(z, k):
    logits = f(z, k)
    lv = cross_entropy(logits, y) if loss == "ce" else dlr_loss(logits, y, target)
    return lv, logits

  ck = checkpoints(steps)
  is_ck = np.zeros(steps + 1, bool)
  window = np.zeros(steps + 1, np.float32)
  prev = 0
  for w in ck:
    is_ck[w], window[w], prev = True, w - prev, w
  is_ck, window = jnp.asarray(is_ck), jnp.asarray(window)

  k0, key = jax.random.split(key)
  x0 = random_start(k0, x, eps, norm, l2_radius="sphere")  # the reference starts on the ε-sphere
  f0, logits0, g0 = eot_value_and_grad(objective, x0, jax.random.fold_in(key, 0), eot)
  fooled0 = jnp.argmax(logits0, 1) != y
  b = x.shape[0]
  eta = jnp.full((b,) + (1,) * (x.ndim - 1), 2.0 * eps)
  state = dict(x=x0, x_prev=x0, g=g0, f=f0, x_best=x0, g_best=g0, f_best=f0, x_adv=x0, fooled=fooled0,
               eta=eta, n_incr=jnp.zeros(b), f_best_ck=f0, reduced=jnp.ones(b, bool))

  def body(k, s):
    z = project(s["x"] + s["eta"] * ascent_direction(s["g"], norm), x, eps, norm)
    a = jnp.where(k == 1, 1.0, 0.75)
    x_new = project(s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), x, eps, norm)
    f_new, logits, g_new = eot_value_and_grad(objective, x_new, jax.random.fold_in(key, k), eot)
    now = jnp.argmax(logits, 1) != y
    sel = lambda m, u, v: jnp.where(m.reshape((-1,) + (1,) * (u.ndim - 1)), u, v)
    x_adv = sel(now & ~s["fooled"], x_new, s["x_adv"])
    improved = f_new > s["f_best"]
    s2 = dict(s, x=x_new, x_prev=s["x"], g=g_new, f=f_new, x_adv=x_adv, fooled=s["fooled"] | now,
              n_incr=s["n_incr"] + (f_new > s["f"]),
              x_best=sel(improved, x_new, s["x_best"]), g_best=sel(improved, g_new, s["g_best"]),
              f_best=jnp.maximum(f_new, s["f_best"]))
    cond = halve_step_size(s2["n_incr"], window[k], rho, s["reduced"], s["f_best_ck"], s2["f_best"]) & is_ck[k]
    s2["eta"] = sel(cond, s["eta"] / 2, s["eta"])
    s2["x"] = sel(cond, s2["x_best"], s2["x"])
    s2["g"] = sel(cond, s2["g_best"], s2["g"])
    s2["n_incr"] = jnp.where(is_ck[k], 0.0, s2["n_incr"])
    s2["f_best_ck"] = jnp.where(is_ck[k], s2["f_best"], s["f_best_ck"])
    s2["reduced"] = jnp.where(is_ck[k], cond, s["reduced"])
    return s2

  s = jax.lax.fori_loop(1, steps + 1, body, state)
  sel = s["fooled"].reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(sel, s["x_adv"], s["x_best"]), s["fooled"]
