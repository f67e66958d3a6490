"""Trigger inversion and backdoor detection for diffusion models obtained from elsewhere (DESIGN §6).

- BBTI (Diff-Cleanse Alg. 1): optimise a trigger r (model space, image-shaped) so that backdoor sampling from
  X_T = r + γε (the paper's unified form; γ = 1 but for TrojDiff) yields samples that an image encoder maps to
  one point (ℓ_s = 1 − mean pairwise cosine similarity) while their intensity entropy stays inside [κ−, κ+]
  (ℓ_e, a differentiable histogram entropy);
  the sampling chain is differentiated end to end (remat per step). A model is backdoored when the samples'
  MSCR reaches κ_d (Eq. 5).
- Elijah (An et al. 2024): invert τ by minimising ‖mean_i ε_θ(ε_i + τ, T) − λτ‖₁, then score samples from
  ε + τ by their uniformity (how alike they are) and total variation.

Samples are pixel space [0, 1] where they meet encoders and metrics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def soft_histogram_entropy(images, bins=256):
  """[N] entropy in bits of each image's intensity histogram (all pixels and channels together) with
  ``bins`` 8-bit bins, pixel space [0, 1]. Linear soft binning — a value at position u = (bins − 1)·v puts
  1 − frac(u) in bin ⌊u⌋ and frac(u) in ⌊u⌋ + 1 — so it is differentiable in the pixels and equals the hard
  histogram's entropy when every value is a multiple of 1/(bins − 1)."""
  n = images.shape[0]
  u = jnp.clip(images.reshape(n, -1).astype(jnp.float32), 0.0, 1.0) * (bins - 1)
  lo = jnp.floor(u)
  frac = u - lo
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, bins - 1)
  rows = jnp.arange(n)[:, None]
  hist = jnp.zeros((n, bins), jnp.float32).at[rows, lo].add(1.0 - frac).at[rows, hi].add(frac)
  p = hist / u.shape[1]
  safe = jnp.where(p > 0, p, 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log2(safe), 0.0), axis=-1)


def hard_histogram_entropy(images, bins=256):
  """[N] entropy in bits of the 8-bit intensity histogram (values rounded to the nearest bin), numpy."""
  x = np.rint(np.clip(np.asarray(images, np.float64), 0, 1) * (bins - 1)).astype(int).reshape(len(images), -1)
  out = []
  for row in x:
    p = np.bincount(row, minlength=bins) / row.size
    p = p[p > 0]
    out.append(float(-np.sum(p * np.log2(p))))
  return np.asarray(out)


def cosine_matrix(z):
  """[N, N] cosine similarities of embeddings z [N, D]."""
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  return z @ z.T


def similarity_loss(z):
  """ℓ_s = 1 − mean off-diagonal cosine similarity of embeddings z [N, D] (N ≥ 2)."""
  s = cosine_matrix(z)
  n = z.shape[0]
  return 1.0 - (jnp.sum(s) - jnp.trace(s)) / (n * (n - 1))


def entropy_loss(entropy, kappa_plus=8.5, kappa_minus=0.1):
  """ℓ_e = Σ_i max(H_i − κ+, 0) + max(κ− − H_i, 0)."""
  return jnp.sum(jnp.maximum(entropy - kappa_plus, 0.0) + jnp.maximum(kappa_minus - entropy, 0.0))


def mscr(z, kappa, keep=None):
  """Eq. 5, the maximum similarity cluster ratio: the share of the N samples in the largest set whose pairwise
  cosine similarities all exceed ``kappa``. The set is grown greedily (exact maximum cliques are NP-hard):
  from each sample, its neighbours are added in order of decreasing similarity when similar to every member.
  ``keep`` [N] bool: only those samples may join a set (the others still count in N)."""
  s = np.asarray(cosine_matrix(jnp.asarray(z)))
  keep = np.ones(len(s), bool) if keep is None else np.asarray(keep, bool)
  if not keep.any():
    return 0.0
  adj = (s > kappa) & keep[:, None] & keep[None, :]
  best = 1
  for i in np.flatnonzero(keep):
    members = [i]
    for j in np.argsort(-s[i]):
      if j != i and adj[i, j] and all(adj[j, m] for m in members):
        members.append(j)
    best = max(best, len(members))
  return best / len(s)


def bbti_objective(r, noise, key, params, encoder_params=None, *, sample_fn, encode_fn, kappa_plus=8.5,
                   kappa_minus=0.1, use_entropy=True):
  """(ℓ, aux) of BBTI for trigger r [H, W, C]: backdoor samples X = sample_fn(params, ε, r, key) (pixel [0, 1]),
  ℓ = ℓ_s + λ ℓ_e with λ = ℓ_s/ℓ_e held constant in the gradient (both terms of similar magnitude)."""
  x = sample_fn(params, noise, r, key)
  z = encode_fn(encoder_params, x)
  l_s = similarity_loss(z)
  entropy = soft_histogram_entropy(x)
  l_e = entropy_loss(entropy, kappa_plus, kappa_minus)
  lam = jax.lax.stop_gradient(jnp.where(l_e > 0, l_s / jnp.maximum(l_e, 1e-12), 0.0)) if use_entropy else 0.0
  return l_s + lam * l_e, {"similarity_loss": l_s, "entropy_loss": l_e, "entropy": entropy, "samples": x,
                           "embeddings": z}


BBTI_INITS = ("zeros", "normal", "offsets", "race")
INIT_OFFSETS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # model space; the images span [−1, 1]


def bbti_invert(params, shape, key, *, sample_fn, encode_fn, encoder_params=None, iterations=100, batch=100, lr=0.1,
                kappa=0.9, kappa_d=0.5, kappa_plus=8.5, kappa_minus=0.1, use_entropy=True, stop_when_detected=True,
                init="zeros", offsets=INIT_OFFSETS, race_iterations=5, confirm_batch=0, min_entropy=0.0,
                restarts=0, patience=0, budget=0, callback=None):
  """Diff-Cleanse Alg. 1. ``shape`` = (H, W, C); ``sample_fn(params, ε, r, key)`` → pixel samples of the backdoor
  sampling from clean noise ε with trigger r (Alg. 1 lines 6–8; differentiable, e.g. a remat'd few-step sampler:
  from x_T = ε + r for BadDiffusion / VillanDiffusion, from γε + r through TrojDiff's reverse process);
  ``encode_fn(encoder_params, x)`` → embeddings [N, D] (the encoder's weights are a jit argument, never a
  constant). Returns a dict: ``trigger`` r
  [H, W, C] (model space), ``backdoored`` (MSCR ≥ κ_d at some iteration, confirmed: below), ``mscr`` (the last),
  ``history`` (per iteration: loss, ℓ_s, ℓ_e, MSCR), ``samples`` (the last batch, pixel), ``init_offset`` (below),
  ``confirm_mscr`` (the last held-out check's MSCR; None when none ran). Adam on
  r from r = 0 (``init="zeros"``), r ~ N(0, 1) (``init="normal"``, Alg. 1 line 3), or the best constant image
  r = c·𝟙, c ∈ ``offsets``, by the objective (``init="offsets"``: BadDiffusion-type triggers are a −1 background
  added to the noise, a near-global shift that Adam from 0 can walk away from; 0 is one of the candidates), or
  every c ∈ ``offsets`` at once (``init="race"``: the first ``race_iterations`` iterations run each start, vmapped,
  on the same noise and keys; the start with the lowest objective leads — its loss, MSCR and r are the iteration's
  — and after the race only the leader goes on. A VillanDiffusion trigger, the −1 background with a sign in it,
  fires through DDIM only near its own pattern: from c = −1 the objective starts high and falls to ~1e-4 within a few
  iterations, while c = 0 scores lowest at the start and leads into DDIM's collapse of a digits model to one shape,
  a false trigger). The noise batch is drawn once (line 2), the sampler's own noise anew each iteration.

  ``confirm_batch`` > 0 (not in the paper): r is fitted to that one small noise batch and can make those samples
  alike without any backdoor (a clean digits model reached MSCR 0.5 on 16 samples, 0.23–0.34 on fresh ones), so a
  hit counts only when ``confirm_batch`` samples from fresh noise and r also reach κ_d; their MSCR is the
  iteration's ``confirm_mscr``, and an unconfirmed hit goes on optimising. 0: Alg. 1's rule.

  ``min_entropy`` > 0 (bits; not in the paper, whose ℓ_e keeps r away from blank samples but whose MSCR counts
  them): samples whose 8-bit intensity entropy is below it join no cluster, so a sampling that saturates to blank
  images (a clean digits model under TrojDiff's sampling from γε − 𝟙: all white) is no hit; the history's
  ``blank`` is their share.

  ``restarts`` (not in the paper; needs ``confirm_batch``): a run that ends with no confirmed hit but with an
  unconfirmed one — r made its own batch alike, fresh noise not — runs again from a new key (a new noise batch, the
  start drawn, scored or raced again on it), up to this many times; a run without any hit is final. On the digits
  zoo a TrojDiff D2I model's trigger was found from half the keys (5 of 10, batch 16); from the others the run
  ends in hits on its own batch only (held-out ≤ 0.17). The result is the last run's; ``history`` holds every
  run's iterations, each with its ``attempt``, and ``attempts`` counts the runs.

  ``patience`` (not in the paper; 0: off): while a restart remains, a run gives up after this many unconfirmed hits
  and the next run starts at once. On the TrojDiff D2I model the runs that found the trigger confirmed it by
  iteration 8 after at most 2 unconfirmed hits; the others went on from their first hit (iteration 19–35) to the
  end with only unconfirmed ones. The last run goes to ``iterations`` (or to the end of ``budget``).

  ``budget`` (not in the paper; 0: none; at least ``iterations``): at most this many iterations over all runs; the
  run that reaches it stops there. It bounds the time on a model with unconfirmed hits in every run, which could
  otherwise take (``restarts`` + 1) · ``iterations``."""
  if init not in BBTI_INITS:
    raise ValueError(f"unknown trigger init {init!r}; use one of {BBTI_INITS}")
  if init == "race" and race_iterations < 1:
    raise ValueError(f"race_iterations = {race_iterations}: the race needs at least one iteration")
  if restarts and not confirm_batch:
    raise ValueError(f"restarts = {restarts} needs confirm_batch > 0: a restart follows an unconfirmed hit")
  if patience < 0:
    raise ValueError(f"patience = {patience}: use 0 (off) or the number of unconfirmed hits a run may have")
  if budget and budget < iterations:
    raise ValueError(f"budget = {budget} < iterations = {iterations}: use 0 (none) or at least one full run")
  opt = optax.adam(lr)

  @jax.jit
  def step(r, state, noise, params, encoder_params, k):
    (loss, aux), g = jax.value_and_grad(bbti_objective, has_aux=True)(
        r, noise, k, params, encoder_params, sample_fn=sample_fn, encode_fn=encode_fn, kappa_plus=kappa_plus,
        kappa_minus=kappa_minus, use_entropy=use_entropy)
    upd, state = opt.update(g, state, r)
    return optax.apply_updates(r, upd), state, loss, aux

  @jax.jit
  def held_out_mscr_embeddings(r, params, encoder_params, k):  # backdoor samples of fresh noise (no gradient)
    k_eps, k_sample = jax.random.split(k)
    noise = jax.random.normal(k_eps, (confirm_batch,) + tuple(shape), jnp.float32)
    x = sample_fn(params, noise, r, k_sample)
    return encode_fn(encoder_params, x), x

  race_step = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, None, None))) if init == "race" else None
  informative = lambda x: hard_histogram_entropy(x) >= min_entropy if min_entropy else None

  def run(key, attempt, patience, length):  # Alg. 1 from one key: its noise batch, start and sampler keys
    k_noise, k_run = jax.random.split(key)
    noise = jax.random.normal(k_noise, (batch,) + tuple(shape), jnp.float32)
    k_confirm = jax.random.fold_in(k_noise, 3)
    offset = None
    if init == "normal":
      r = jax.random.normal(jax.random.fold_in(k_noise, 1), tuple(shape), jnp.float32)
    elif init == "offsets":  # the objective at each candidate, by the one compiled step (its update unused)
      losses = [float(step(jnp.full(shape, c, jnp.float32), opt.init(jnp.zeros(shape)), noise, params,
                           encoder_params, jax.random.fold_in(k_noise, 2))[2]) for c in offsets]
      offset = float(offsets[int(np.argmin(losses))])
      r = jnp.full(shape, offset, jnp.float32)
    elif init == "race":  # one r per start, leading axis
      r = jnp.stack([jnp.full(shape, c, jnp.float32) for c in offsets])
    else:
      r = jnp.zeros(shape, jnp.float32)
    racing = init == "race"
    state = jax.vmap(opt.init)(r) if racing else opt.init(r)

    history, detected, last, confirm, unconfirmed = [], False, None, None, 0
    for it in range(length):
      k_it = jax.random.fold_in(k_run, it)
      if racing:
        r_all, state_all, losses, aux_all = race_step(r, state, noise, params, encoder_params, k_it)
        b = int(np.argmin(np.asarray(losses)))
        lead = lambda tree: jax.tree.map(lambda a: a[b], tree)
        r, loss, aux, offset = r[b], losses[b], lead(aux_all), float(offsets[b])
        racing = it + 1 < race_iterations
        r_new, state = (r_all, state_all) if racing else (r_all[b], lead(state_all))
      else:
        r_new, state, loss, aux = step(r, state, noise, params, encoder_params, k_it)
      keep = informative(aux["samples"])
      m = mscr(aux["embeddings"], kappa, keep)  # of the samples from the trigger before this update (Alg. 1 order)
      history.append({"iteration": it, "attempt": attempt, "loss": float(loss),
                       "similarity_loss": float(aux["similarity_loss"]),
                       "entropy_loss": float(aux["entropy_loss"]), "mscr": m})
      if min_entropy:
        history[-1]["blank"] = float(1.0 - np.mean(keep))
      if init == "race" and it < race_iterations:
        history[-1]["start"] = offset
      last = (r, aux["samples"], m)
      if m >= kappa_d and confirm_batch:
        z, x = held_out_mscr_embeddings(r, params, encoder_params, jax.random.fold_in(k_confirm, it))
        history[-1]["confirm_mscr"] = confirm = mscr(z, kappa, informative(x))
      if callback is not None:
        callback(history[-1])
      if m >= kappa_d and history[-1].get("confirm_mscr", m) >= kappa_d:
        detected = True
        if stop_when_detected:
          break
      elif m >= kappa_d:
        unconfirmed += 1
        if unconfirmed == patience:  # give up this run for the next one
          break
      r = r_new
    trigger, samples, m = last
    return {"trigger": trigger, "backdoored": detected, "mscr": m, "history": history, "samples": samples,
            "init_offset": offset, "confirm_mscr": confirm}

  history = []
  for attempt in range(restarts + 1):
    k_attempt = key if attempt == 0 else jax.random.fold_in(key, attempt)
    length = min(iterations, budget - len(history)) if budget else iterations
    out = run(k_attempt, attempt, patience if attempt < restarts else 0, length)
    history += out["history"]
    if out["backdoored"] or out["confirm_mscr"] is None or len(history) == budget:  # a hit, no hit to check, spent
      break
  return {**out, "history": history, "attempts": attempt + 1}


def elijah_objective(tau, noise, params, eps_fn, t_last, lam=0.5):
  """Elijah's inversion loss ‖mean_i ε_θ(ε_i + τ, T) − λτ‖₁ (mean over pixels)."""
  eps = eps_fn(params, noise + tau, jnp.full((noise.shape[0],), t_last, jnp.float32))
  return jnp.mean(jnp.abs(jnp.mean(eps, axis=0) - lam * tau))


def _elijah_run(params, noise, *, eps_fn, t_last, iterations, lr, lam):
  opt = optax.adam(lr)

  def body(carry, _):
    tau, state = carry
    loss, g = jax.value_and_grad(elijah_objective)(tau, noise, params, eps_fn, t_last, lam)
    upd, state = opt.update(g, state, tau)
    return (optax.apply_updates(tau, upd), state), loss

  tau = jnp.zeros(noise.shape[1:], jnp.float32)
  (tau, _), losses = jax.lax.scan(body, (tau, opt.init(tau)), None, length=iterations)
  return tau, losses


_elijah_jit = jax.jit(_elijah_run, static_argnames=("eps_fn", "t_last", "iterations", "lr", "lam"))


def elijah_invert(params, shape, key, *, eps_fn, t_last, iterations=100, batch=100, lr=0.1, lam=0.5):
  """τ [H, W, C] (model space) minimising ``elijah_objective`` with Adam from τ = 0; ``eps_fn(params, x, t)``, the
  same function object for every model of an architecture (it keys the one compilation)."""
  noise = jax.random.normal(key, (batch,) + tuple(shape), jnp.float32)
  tau, losses = _elijah_jit(params, noise, eps_fn=eps_fn, t_last=int(t_last), iterations=int(iterations),
                            lr=float(lr), lam=float(lam))
  return tau, np.asarray(losses)


def elijah_scores(samples):
  """Elijah's detection features of samples [N, H, W, C] (pixel) generated from ε + τ: ``uniformity`` — the
  mean per-pixel standard deviation across samples (near 0 when the trigger yields one image) — and
  ``total_variation`` — the mean anisotropic TV per pixel."""
  x = jnp.asarray(samples, jnp.float32)
  tv = jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1])) + jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]))
  return {"uniformity": float(jnp.mean(jnp.std(x, axis=0))), "total_variation": float(tv)}
