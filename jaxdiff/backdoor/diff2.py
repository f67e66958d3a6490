"""DIFF2 (Li et al., "Watch the Watchers"): trigger optimisation (Alg. 1 l.1–3, Eq. 10; universal or
input-specific, §5.5) and the backdoor fine-tuning losses (Alg. 1 l.4–8; Alg. 2 / Eq. 13; poisoning;
TrojDiff-adapted schemes, Eq. 14), model space for the denoiser.

Surrogate classifiers are pure functions: ``f(x)`` closures, or ``f(params, x)`` with their weights
passed as ``params`` (one sequence entry per surrogate), so the compiled steps take weights as arguments."""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxdiff.attacks.common import cross_entropy
from jaxdiff.backdoor.triggers import blend
from jaxdiff.functional import bind
from jaxdiff.parallel import batch_sharded, replicated


def bind_all(surrogates, params):
  """Closures f(x) of the surrogates, with their weights bound when ``params`` is given."""
  return [bind(f, p) for f, p in zip(surrogates, [None] * len(surrogates) if params is None else params)]


def trigger_loss(surrogates, r, x, y, *, alpha, mask=None, targeted=False, target_class=0, params=None):
  """Σ_f ℓ(f(x_r), ·) (Eq. 10): minimising it makes x_r adversarial for every surrogate f.

  Untargeted: −CE(f(x_r), y) (maximise CE on the true label); targeted: CE(f(x_r), y*).
  """
  xr = jnp.clip(blend(x, r, alpha, mask), 0.0, 1.0)
  total = 0.0
  for f in bind_all(surrogates, params):
    logits = f(xr)
    total = total + (jnp.mean(cross_entropy(logits, jnp.full_like(y, target_class))) if targeted
                     else -jnp.mean(cross_entropy(logits, y)))
  return total


def optimize_trigger(surrogates, batches, *, key, shape, alpha, steps, lr=0.1, mask=None, targeted=False,
                     target_class=0, mesh=None, log=None, params=None):
  """Adam on a universal trigger r ∈ [0, 1]^shape (clipped after each step). ``batches`` yields
  (x, y) pixel-space device arrays (sharded over ``mesh``); returns r (replicated)."""
  opt = optax.adam(lr)
  r = jax.random.uniform(key, shape)
  state = opt.init(r)

  def step(r, state, x, y, params):
    loss, g = jax.value_and_grad(lambda r_: trigger_loss(surrogates, r_, x, y, alpha=alpha, mask=mask,
                                                         targeted=targeted, target_class=target_class,
                                                         params=params))(r)
    upd, state = opt.update(g, state, r)
    return jnp.clip(optax.apply_updates(r, upd), 0.0, 1.0), state, loss

  if mesh is not None:
    rep, dat = replicated(mesh), batch_sharded(mesh)
    step = jax.jit(step, in_shardings=(rep, rep, dat, dat, rep), out_shardings=(rep, rep, rep))
  else:
    step = jax.jit(step)
  for i, (x, y) in zip(range(steps), batches):
    r, state, loss = step(r, state, x, y, params)
    if log is not None and (i + 1) % max(1, steps // 10) == 0:
      log(i + 1, {"trigger_loss": float(loss)})
  return r


def input_specific_trigger(surrogates, x, *, alpha, steps=10, targeted=False, target_class=0, params=None):
  """Per-input triggers (§5.5, Table 19): for each x, r_x ∈ [0, 1] by signed-gradient PGD on the
  trigger loss (Eq. 10) with x_r = (1 − α)x + αr_x. Untargeted attacks the surrogates' own prediction,
  so no labels are needed. x [B, H, W, C] pixel space → x_r, same shape."""
  y = jnp.argmax(sum(jax.nn.log_softmax(f(x)) for f in bind_all(surrogates, params)), -1)
  step = 2.5 / max(steps, 1)  # r lives in [0, 1]: PGD's usual 2.5·radius/steps

  def body(_, r):
    g = jax.grad(lambda r_: trigger_loss(surrogates, r_, x, y, alpha=alpha, targeted=targeted,
                                         target_class=target_class, params=params))(r)
    return jnp.clip(r - step * jnp.sign(g), 0.0, 1.0)

  r = jax.lax.fori_loop(0, steps, body, jnp.full_like(x, 0.5))
  return jax.lax.stop_gradient(jnp.clip(blend(x, r, alpha), 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class InputSpecificTrigger:
  """Trigger whose ``apply(x, params)`` optimises a fresh r for every input (see ``input_specific_trigger``);
  ``params``: the surrogates' weights when they are pure functions ``f(params, x)``."""
  surrogates: Sequence[Callable]
  alpha: float
  steps: int = 10
  targeted: bool = False
  target_class: int = 0
  kind: str = "input_specific"

  def apply(self, x, params=None):
    return input_specific_trigger(self.surrogates, x, alpha=self.alpha, steps=self.steps,
                                  targeted=self.targeted, target_class=self.target_class, params=params)


SCHEMES = ("diff2", "trojdiff_patch", "trojdiff_adversarial")


def diff2_inputs(schedule, x, xr, key, *, t_trunc=300, entangled=True):
  """Noised clean and trigger inputs of Alg. 1 l.6–8 (model space): t ~ U{1..T}, s ~ U{1..t_trunc}
  (indices 0..t_trunc−1), ε* = ε when ``entangled`` (§3.4). Returns a dict of arrays."""
  k_t, k_s, k_n, k_n2 = jax.random.split(key, 4)
  b = x.shape[0]
  t = jax.random.randint(k_t, (b,), 0, schedule.num_timesteps).astype(jnp.float32)
  s = jax.random.randint(k_s, (b,), 0, t_trunc).astype(jnp.float32)
  noise = jax.random.normal(k_n, x.shape)
  noise_r = noise if entangled else jax.random.normal(k_n2, x.shape)
  return dict(t=t, s=s, noise=noise, noise_r=noise_r, x_t=schedule.q_sample(2 * x - 1, t, noise),
              xr_s=schedule.q_sample(2 * xr - 1, s, noise_r))


def diff2_loss(schedule, trigger_apply, *, lam=1.0, t_trunc=300, entangled=True, reverse_target=None,
               poison_rate=None, scheme="diff2", noise_trigger=None, gamma=0.6):
  """Fine-tuning loss for ``make_train_step`` (pixel batches; the denoiser works in model space).

  Default (Alg. 1 with §3.4 refinements): ‖ε − ε_θ(x_t, t)‖² + λ‖ε* − ε_θ(x_{r,s}, s)‖², t ~ U{1..T},
  s ~ U{1..t_trunc}, ε* = ε when ``entangled``; λ = 0 is the clean loss alone (benign fine-tuning).
  ``trigger_apply(x, frozen)`` maps clean pixels to trigger inputs; ``frozen`` is the train step's frozen
  argument (the surrogates' weights, for input-specific triggers and reverse targets; may be None).
  ``reverse_target(x_r, key, frozen)`` (Alg. 2, Eq. 13): the reverse process should output x̃_r (e.g. an
  adversarial version of a patched x_r): ε* = (x_{r,s} − √ᾱ_s x̃_r)/√(1−ᾱ_s).
  ``poison_rate`` p (poisoning-based DIFF2): no trigger term; a fraction p of the batch is replaced by
  trigger inputs trained with the plain DDPM loss.
  ``scheme`` (§5.6, Eq. 14; ρ = 2·``noise_trigger`` − 1 is the trigger pattern in model space):
  'trojdiff_patch': x_{r,s} = √ᾱ_s x + √(1−ᾱ_s)(γε + ρ), reversed to the trigger input x_r
  (ε* = (x_{r,s} − √ᾱ_s x_r)/√(1−ᾱ_s)); 'trojdiff_adversarial': x_{r,s} = √ᾱ_s x_r + √(1−ᾱ_s)(γε + ρ)
  with ε* = ε (entangled). 'diff2' is Alg. 1.
  """
  if scheme not in SCHEMES:
    raise ValueError(f"unknown DIFF2 scheme {scheme!r}; use one of {SCHEMES}")
  if scheme != "diff2" and noise_trigger is None:
    raise ValueError(f"scheme {scheme!r} needs noise_trigger (the pattern r of Eq. 14, pixel space)")

  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    x = batch["image"]
    k_drop, k_in, k_tgt, k_p = jax.random.split(key, 4)
    eps_fn = lambda z, t: apply_fn({"params": params}, z, t, train=True, rngs={"dropout": k_drop})
    mse = lambda a, c: jnp.mean((a - c) ** 2, axis=tuple(range(1, x.ndim)))
    clean_only = lam == 0 and poison_rate is None  # benign fine-tuning: the trigger term is never computed
    xr = x if clean_only else trigger_apply(x, frozen)
    if poison_rate is not None:
      poisoned = jax.random.bernoulli(k_p, poison_rate, x.shape[:1]).reshape((-1,) + (1,) * (x.ndim - 1))
      d = diff2_inputs(schedule, jnp.where(poisoned, xr, x), xr, k_in, t_trunc=t_trunc)
      loss = jnp.mean(mse(eps_fn(d["x_t"], d["t"]), d["noise"]))
      return loss, ({"poisoned_fraction": jnp.mean(poisoned)}, model_state)
    d = diff2_inputs(schedule, x, xr, k_in, t_trunc=t_trunc, entangled=entangled)
    clean = jnp.mean(mse(eps_fn(d["x_t"], d["t"]), d["noise"]))
    if clean_only:
      return clean, ({"clean_loss": clean}, model_state)
    target, xr_s = d["noise_r"], d["xr_s"]
    if scheme != "diff2":  # Eq. 14: the trigger is carried by the noise, γε + ρ
      shifted = gamma * d["noise"] + (2 * noise_trigger - 1)
      base = x if scheme == "trojdiff_patch" else xr
      xr_s = schedule.q_sample(2 * base - 1, d["s"], shifted)
      target = schedule.predict_eps(xr_s, d["s"], 2 * xr - 1) if scheme == "trojdiff_patch" else d["noise"]
    elif reverse_target is not None:
      x_tilde = jax.lax.stop_gradient(reverse_target(xr, k_tgt, frozen))
      target = schedule.predict_eps(xr_s, d["s"], 2 * x_tilde - 1)
    trig = jnp.mean(mse(eps_fn(xr_s, d["s"]), target))
    return clean + lam * trig, ({"clean_loss": clean, "trigger_loss": trig}, model_state)

  return loss_fn
