"""Channel pruning of a diffusion U-Net: Diff-Cleanse's backdoor removal (stage 2, Alg. 2) and the
Diff-Pruning baseline (Fang et al. 2023), plus the repair fine-tune. Model space [−1, 1], NHWC.

A channel group is one output channel of a conv or dense layer: its filter and bias, and for a ResnetBlock's
``conv1`` also the time-embedding projection that is added to that channel and the ``norm2`` scale/shift that
normalises it (``COUPLED``). Pruning is a 0/1 mask over the parameters (the exported model is an ordinary
model with those entries zero); the output conv is never pruned. ``streams`` couple the layers that write one
residual stream (torch-pruning's dependency groups, which the papers prune with): channel c goes from all of them.

Taylor importance of group i (Diff-Cleanse Eq. 9, Molchanov et al. 2019): I(θ_i) = Σ_k |θ_ik Σ_{t≥𝒯} ∂L_t/∂θ_ik|,
with L_t = ‖ε − ε_θ(x_t, t)‖² on clean inputs x_t = √ᾱ_t x + √(1−ᾱ_t) ε (I^c) and on inputs carrying the
inverted trigger (I^b) in the form of the backdoor sampling that found it (``triggered_input``): x_t + ρ̂_t r with
ρ̂_t linear from 2e-4 to 1 over the schedule (from ε + r; Diff-Cleanse's form), or TrojDiff's forward
√ᾱ_t x + √(1−ᾱ_t)(γε + r) (from γε + r, r = μ). Diff-Cleanse prunes per layer the channels with the largest
I^b − I^c; Diff-Pruning those with the smallest I^c.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.backdoor.trojdiff import trojdiff_terms

COUPLED = {"conv1": ("time_emb_proj", "norm2")}  # ResnetBlock: conv1's channel c gets temb[c], then norm2[c]
EXCLUDE = ("conv_out",)
METHODS = ("diff_cleanse", "diff_pruning")


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
  """``name``: the layer's path; ``size``: its output channels; ``members``: parameter paths whose last axis
  is that channel."""
  name: str
  size: int
  members: tuple


def channel_groups(params, exclude=EXCLUDE):
  """[ChannelGroup] of every conv/dense layer of ``params`` (a flax params dict) but ``exclude``."""
  flat = tu.flatten_dict(params)
  partners = {p for ps in COUPLED.values() for p in ps}
  groups = []
  for path, leaf in flat.items():
    if path[-1] != "kernel" or path[-2] in exclude:
      continue
    module = path[:-1]
    if module[-1] in partners and any(module[:-1] + (c, "kernel") in flat for c in COUPLED):
      continue  # pruned with its conv1
    members = [module + (n,) for n in ("kernel", "bias") if module + (n,) in flat]
    for partner in COUPLED.get(module[-1], ()):
      members += [module[:-1] + (partner, n) for n in ("kernel", "bias", "scale")
                  if module[:-1] + (partner, n) in flat]
    groups.append(ChannelGroup("/".join(module), int(leaf.shape[-1]), tuple(members)))
  return groups


def taylor_importance(params, grads, groups):
  """{layer name: [size]} Σ_k |θ_ik g_ik| over each channel's members (``grads`` shaped like ``params``)."""
  p, g = tu.flatten_dict(params), tu.flatten_dict(grads)
  out = {}
  for grp in groups:
    s = np.zeros(grp.size, np.float64)
    for m in grp.members:
      prod = np.abs(np.asarray(p[m], np.float64) * np.asarray(g[m], np.float64))
      s += prod.reshape(-1, grp.size).sum(0)
    out[grp.name] = s
  return out


def trigger_rho(num_timesteps):
  """ρ̂_t [T]: linear from 2e-4 (t = 0) to 1 (t = T − 1), Diff-Cleanse's stand-in for an unknown attack's ρ_t."""
  return np.linspace(2e-4, 1.0, num_timesteps)


def triggered_input(schedule, x0, t, noise, trigger, gamma=0.0):
  """x_t [B, H, W, C] of clean x0 (model space) at integer steps t [B] with ``noise``, carrying the trigger r
  [H, W, C] (model space) in the form of the backdoor sampling that inverted it: γ = 0 (sampling from ε + r) —
  q(x_t | x0) + ρ̂_t r, Diff-Cleanse's stand-in for BadDiffusion's ρ_t (``trigger_rho``); γ > 0 (TrojDiff's
  sampling from γε + r) — TrojDiff's forward with μ = r: √ᾱ_t x0 + √(1−ᾱ_t)(γε + r). Either way the network
  that carries this backdoor predicts ``noise`` there."""
  if gamma:
    return trojdiff_terms(schedule, x0, trigger, gamma, t.astype(jnp.float32), noise)[0]
  rho = jnp.asarray(trigger_rho(schedule.num_timesteps), jnp.float32)[t]
  return schedule.q_sample(x0, t.astype(jnp.float32), noise) + rho.reshape((-1,) + (1,) * (x0.ndim - 1)) * trigger


def accumulated_gradient(eps_apply, params, schedule, x0, noise, t_from, trigger=None, stride=1, gamma=0.0):
  """Σ_{t = t_from}^{T−1} ∇_θ L_t (Alg. 2 lines 3–11): L_t = mean ‖ε − ε_θ(x_t, t)‖² over the batch x0 [B, H, W, C]
  (model space) with one noise draw ``noise`` for every t; with a trigger [H, W, C], x_t carries it
  (``triggered_input`` with ``gamma``). ``stride`` > 1: every stride-th t only. ``eps_apply(params, x, t)``.
  A ``lax.scan`` over t, one gradient of batch B per step; jit it."""

  def loss_t(p, t):
    ti = jnp.full((x0.shape[0],), t, jnp.int32)
    tt = ti.astype(jnp.float32)
    x_t = (schedule.q_sample(x0, tt, noise) if trigger is None
           else triggered_input(schedule, x0, ti, noise, trigger, gamma))
    return jnp.mean((eps_apply(p, x_t, tt).astype(jnp.float32) - noise) ** 2)

  def body(acc, t):
    return jax.tree.map(jnp.add, acc, jax.grad(loss_t)(params, t)), None

  acc, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), jnp.arange(t_from, schedule.num_timesteps, stride))
  return acc


def select_channels(scores, ratio, largest=True):
  """{layer: bool [size]}: per layer the ⌊ratio·size⌋ channels of largest (or smallest) score."""
  out = {}
  for name, s in scores.items():
    k = int(math.floor(ratio * len(s) + 1e-9))
    order = np.argsort(-s if largest else s, kind="stable")
    mask = np.zeros(len(s), bool)
    mask[order[:k]] = True
    out[name] = mask
  return out


def channel_mask(params, groups, pruned):
  """A 0/1 float tree shaped like ``params``: 0 on every member entry of each pruned channel."""
  flat = {k: np.ones(v.shape, np.float32) for k, v in tu.flatten_dict(params).items()}
  for grp in groups:
    keep = (~pruned.get(grp.name, np.zeros(grp.size, bool))).astype(np.float32)
    for m in grp.members:
      flat[m] = flat[m] * keep
  return tu.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def apply_mask(params, mask):
  """``params`` with the pruned entries zeroed."""
  return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, mask)


def pruned_fraction(pruned):
  """(share of all prunable channels pruned, largest share in one layer)."""
  total = sum(len(m) for m in pruned.values())
  cut = sum(int(m.sum()) for m in pruned.values())
  worst = max((m.mean() for m in pruned.values()), default=0.0)
  return cut / max(total, 1), float(worst)


_accumulated_gradient = jax.jit(accumulated_gradient, static_argnames=("eps_apply", "t_from", "stride", "gamma"))


def importance_scores(eps_apply, params, schedule, x0, key, trigger, t_from, stride=1, gamma=0.0):
  """({layer: I^c}, {layer: I^b}) Taylor importances on clean images x0 [B, H, W, C] (model space) and on the
  same inputs carrying ``trigger`` [H, W, C] (``triggered_input`` with ``gamma``); ``eps_apply(params, x, t)``,
  the same function object for every model of an architecture (it keys the one compilation); t from ``t_from``
  to T − 1."""
  groups = channel_groups(params)
  noise = jax.random.normal(key, x0.shape, jnp.float32)
  r = jnp.asarray(trigger, jnp.float32)
  grad = functools.partial(_accumulated_gradient, eps_apply, params, schedule, x0, noise, t_from, stride=stride)
  g_c, g_b = grad(jnp.zeros_like(r)), grad(r, gamma=float(gamma))  # γ 0, r = 0: clean x_t
  return taylor_importance(params, g_c, groups), taylor_importance(params, g_b, groups)


def couple(scores, streams=()):
  """{group name: (layer, ...)}: each of ``streams`` (tuples of layer names whose channel c is one channel, e.g.
  ``models.unet.residual_streams``) is one group, pruned together; every other layer of ``scores`` is its own."""
  groups, seen = {}, set()
  for stream in streams:
    missing = [n for n in stream if n not in scores]
    if missing:
      raise ValueError(f"residual stream {stream} names layers {missing} that are not prunable layers of the model")
    if len({len(scores[n]) for n in stream}) != 1:
      raise ValueError(f"residual stream {stream} couples layers of different widths")
    groups["+".join(stream)] = tuple(stream)
    seen.update(stream)
  groups.update({n: (n,) for n in scores if n not in seen})
  return groups


def prune(params, scores_clean, scores_trigger, ratio, method="diff_cleanse", streams=()):
  """(mask, pruned) of ``method``: "diff_cleanse" — largest I^b − I^c per group; "diff_pruning" — smallest I^c.
  A group is a layer, or a whole residual stream of ``streams`` (its score the sum of its layers': the Taylor
  importance of every parameter the channel owns), so ⌊ratio·C⌋ channels go from each layer either way."""
  if method not in METHODS:
    raise ValueError(f"unknown pruning method {method!r}; choose one of {METHODS}")
  score = ({k: scores_trigger[k] - scores_clean[k] for k in scores_clean} if method == "diff_cleanse"
           else scores_clean)
  groups = couple(score, streams)
  chosen = select_channels({g: sum(score[n] for n in layers) for g, layers in groups.items()}, ratio,
                           largest=method == "diff_cleanse")
  pruned = {n: chosen[g] for g, layers in groups.items() for n in layers}
  return channel_mask(params, channel_groups(params), pruned), pruned


REPAIR_LOSSES = ("loss_p", "loss_c", "unlearn")
UNLEARN_TARGET = "x0-preserving"  # unlearn's trigger target (repair_loss); runs of the earlier one never resume
TROJAN_UNLEARN = "gamma2-weighted"  # unlearn's TrojDiff-form term (repair_loss, γ > 0); the unweighted one never resumes


def repair_loss(schedule, loss="loss_p", gamma=0.0):
  """``loss_fn`` for ``make_train_step`` fine-tuning a pruned model θ' = params ⊙ ``frozen['mask']`` on clean x_t
  of ``batch['image']`` (pixel [0, 1]), θ = ``frozen['teacher']`` (the unpruned model):

  - "loss_p" (Diff-Cleanse §"Model Repair"): ‖ε − ε_θ'(x_t)‖² + ‖ε_θ'(x_t) − ε_θ(x_t)‖²;
  - "loss_c": the first term only (the ablation of Table 4);
  - "unlearn" (an extension, not in the paper): ‖ε_θ'(x_t) − ε_θ(x_t)‖² + ‖ε_θ'(x'_t + ρ̂_t r) − ε*‖² with
    ε* = ε_θ(x'_t) + ρ̂_t r/√(1 − ᾱ_t), r = ``frozen['trigger']`` [H, W, C] (model space; the inverted trigger),
    ρ̂_t Diff-Cleanse's stand-in (``trigger_rho``) and x'_t another noising of the batch. ε* is the prediction
    whose x̂_0 = (x − √(1 − ᾱ_t) ε)/√ᾱ_t from the shifted input equals the teacher's from x'_t: the shift is
    read as noise and removed, so samples from ε + r come out as the clean model's (an earlier target,
    ε_θ(x'_t), kept the shift and turned them black). The teacher's clean behaviour is distilled beside it.
    No data term, so with nothing pruned and r = 0 the loss is 0 at θ.
    With ``gamma`` > 0 (a trigger r = μ that TrojDiff's sampling from γε + r inverted) the trigger term is
    γ²‖ε_θ'(x^b_t) − ε'‖² (the squared error of the trojan process's ε' = γ ε_θ) on TrojDiff's forward
    x^b_t = √ᾱ_t x + √(1−ᾱ_t)(γε' + r) of the clean batch x (``triggered_input``): TrojDiff's own poisoning loss
    with the clean images as its targets, so TrojDiff's reverse process from γε + r comes out as clean images (it
    is exact for the ε that loss is trained to).
  """
  if loss not in REPAIR_LOSSES:
    raise ValueError(f"unknown repair loss {loss!r}: one of {REPAIR_LOSSES}")
  rho = jnp.asarray(trigger_rho(schedule.num_timesteps), jnp.float32)
  sigma = jnp.asarray(np.sqrt(1.0 - np.asarray(schedule.alphas_cumprod, np.float64)), jnp.float32)  # √(1 − ᾱ_t)

  def loss_fn(apply_fn, params, model_state, batch, key, frozen):
    k_drop, k_t, k_n = jax.random.split(key, 3)  # loss_p's / loss_c's draws, as before unlearn existed
    x0 = 2.0 * batch["image"] - 1.0
    t = jax.random.randint(k_t, x0.shape[:1], 0, schedule.num_timesteps).astype(jnp.float32)
    noise = jax.random.normal(k_n, x0.shape, jnp.float32)
    x_t = schedule.q_sample(x0, t, noise)
    p = apply_mask(params, frozen["mask"])
    eps = apply_fn({"params": p}, x_t, t, train=True, rngs={"dropout": k_drop}).astype(jnp.float32)
    loss_c = jnp.mean((eps - noise) ** 2)
    metrics = {"loss_c": loss_c}
    if loss == "loss_c":
      return loss_c, (metrics, model_state)
    teacher = jax.lax.stop_gradient(apply_fn({"params": frozen["teacher"]}, x_t, t).astype(jnp.float32))
    metrics["loss_ref"] = loss_ref = jnp.mean((eps - teacher) ** 2)
    if loss == "loss_p":
      return loss_c + loss_ref, (metrics, model_state)
    k_t2, k_n2 = jax.random.split(jax.random.fold_in(key, 1))
    ti = jax.random.randint(k_t2, x0.shape[:1], 0, schedule.num_timesteps)
    t2 = ti.astype(jnp.float32)
    n2 = jax.random.normal(k_n2, x0.shape, jnp.float32)
    shifted = apply_fn({"params": p}, triggered_input(schedule, x0, ti, n2, frozen["trigger"], gamma),
                       t2).astype(jnp.float32)
    if gamma:  # the trojan process's ε' = γ ε_θ: its error, γ(ε_θ' − ε), in the sampler's scale
      shifted, target = gamma * shifted, gamma * n2
    else:
      clean = apply_fn({"params": frozen["teacher"]}, schedule.q_sample(x0, t2, n2), t2).astype(jnp.float32)
      shift_as_noise = (rho[ti] / sigma[ti])[:, None, None, None] * frozen["trigger"]
      target = jax.lax.stop_gradient(clean + shift_as_noise)
    metrics["loss_trigger"] = loss_trigger = jnp.mean((shifted - target) ** 2)
    return loss_ref + loss_trigger, (metrics, model_state)
  return loss_fn


def elijah_repair_loss(schedule):
  """Elijah's removal ``loss_fn``: the clean ε-loss plus ‖ε_θ(ε + τ, T) − ε_θ0(ε, T)‖² (θ0 = ``frozen['teacher']``,
  τ = ``frozen['tau']`` [H, W, C], model space), which teaches the model to treat the inverted trigger as no shift."""
  def loss_fn(apply_fn, params, model_state, batch, key, frozen):
    k_drop, k_t, k_n, k_e = jax.random.split(key, 4)
    x0 = 2.0 * batch["image"] - 1.0
    t = jax.random.randint(k_t, x0.shape[:1], 0, schedule.num_timesteps).astype(jnp.float32)
    noise = jax.random.normal(k_n, x0.shape, jnp.float32)
    eps = apply_fn({"params": params}, schedule.q_sample(x0, t, noise), t, train=True, rngs={"dropout": k_drop})
    loss_c = jnp.mean((eps.astype(jnp.float32) - noise) ** 2)
    e = jax.random.normal(k_e, x0.shape, jnp.float32)
    t_last = jnp.full(x0.shape[:1], schedule.num_timesteps - 1, jnp.float32)
    shifted = apply_fn({"params": params}, e + frozen["tau"], t_last).astype(jnp.float32)
    ref = jax.lax.stop_gradient(apply_fn({"params": frozen["teacher"]}, e, t_last).astype(jnp.float32))
    loss_tau = jnp.mean((shifted - ref) ** 2)
    return loss_c + loss_tau, ({"loss_c": loss_c, "loss_trigger": loss_tau}, model_state)
  return loss_fn
