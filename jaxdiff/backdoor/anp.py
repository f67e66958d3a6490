"""Adversarial Neuron Pruning (Wu & Wang 2021) for a diffusion U-Net (DIFF2 Appendix C.1, Fig. 11; BadDiffusion
App. B). Model space [−1, 1], NHWC.

Every channel group of ``pruning.channel_groups`` (one output channel of a conv/dense layer) gets a mask
m ∈ [0, 1] that scales its output: the filter and bias, or for a ResnetBlock's conv1 the ``norm2`` scale and shift
that produce the channel after the norm. On clean data the masks minimise (ANP Eq. 5)

  α L(m) + (1 − α) max_{δ ∈ [−ε, ε]} L(m + δ),    L = ‖ε − ε_θ(x_t, t)‖² (the DDPM loss, t ~ U{0..T−1}),

the inner max by ``steps`` signed-gradient steps of size ε/steps from a uniform start; SGD with momentum 0.9 on
m, clipped to [0, 1]. Channels whose mask ends below ``threshold`` are pruned (``pruning.channel_mask``: every
member zeroed, an ordinary model). Neurons a backdoor relies on are the ones that small adversarial
perturbations make the model collapse through, so their masks shrink first.
"""
from __future__ import annotations

import functools

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.backdoor.pruning import channel_groups, channel_mask


def output_members(group):
  """The members of a channel group that set its output: ``norm2`` scale/bias when coupled, else kernel/bias."""
  after_norm = tuple(m for m in group.members if "norm2" in m[-2])
  return after_norm or tuple(m for m in group.members if m[-1] in ("kernel", "bias"))


def scale_channels(params, groups, scales):
  """``params`` with each group's output members multiplied channel-wise by ``scales[name]`` [size]."""
  flat = dict(tu.flatten_dict(params))
  for grp in groups:
    for m in output_members(grp):
      flat[m] = flat[m] * scales[grp.name].astype(flat[m].dtype)
  return tu.unflatten_dict(flat)


def _loss_at(eps_apply, groups, params, scales, x_t, t, noise):
  out = eps_apply(scale_channels(params, groups, scales), x_t, t).astype(jnp.float32)
  return jnp.mean((out - noise) ** 2)


def anp_step(eps_apply, groups, schedule, masks, opt_state, params, x0, key, *, eps, steps, alpha):
  """One ANP step on clean images ``x0`` [B, H, W, C] (model space): (masks, opt_state, metrics). The optimiser
  is ``OPTIMIZER`` (its learning rate lives in ``opt_state``), so one compilation serves every rate and model."""
  loss_at = functools.partial(_loss_at, eps_apply, groups, params)
  k_t, k_n, k_d = jax.random.split(key, 3)
  t = jax.random.randint(k_t, x0.shape[:1], 0, schedule.num_timesteps).astype(jnp.float32)
  noise = jax.random.normal(k_n, x0.shape, jnp.float32)
  x_t = schedule.q_sample(x0, t, noise)
  leaves, tree = jax.tree.flatten(masks)
  delta = jax.tree.unflatten(tree, [jax.random.uniform(k, m.shape, minval=-eps, maxval=eps)
                                    for k, m in zip(jax.random.split(k_d, len(leaves)), leaves)])
  for _ in range(steps):  # inner max: signed gradient ascent on the perturbation
    g = jax.grad(lambda d: loss_at(jax.tree.map(jnp.add, masks, d), x_t, t, noise))(delta)
    delta = jax.tree.map(lambda d, gd: jnp.clip(d + eps / steps * jnp.sign(gd), -eps, eps), delta, g)
  delta = jax.lax.stop_gradient(delta)

  def objective(m):
    natural = loss_at(m, x_t, t, noise)
    perturbed = loss_at(jax.tree.map(jnp.add, m, delta), x_t, t, noise)
    return alpha * natural + (1 - alpha) * perturbed, (natural, perturbed)

  (loss, (natural, perturbed)), grads = jax.value_and_grad(objective, has_aux=True)(masks)
  updates, opt_state = OPTIMIZER.update(grads, opt_state, masks)
  masks = jax.tree.map(lambda m: jnp.clip(m, 0.0, 1.0), optax.apply_updates(masks, updates))
  return masks, opt_state, {"loss": loss, "natural": natural, "perturbed": perturbed}


OPTIMIZER = optax.inject_hyperparams(optax.sgd)(learning_rate=0.2, momentum=0.9)
_anp_step = jax.jit(anp_step, static_argnames=("eps_apply", "groups", "eps", "steps", "alpha"))


def anp_masks(eps_apply, params, schedule, batches, key, *, eps=0.4, steps=1, alpha=0.2, lr=0.2, callback=None):
  """{layer: mask [size]} (numpy) after one ANP step per batch of ``batches`` (clean images [B, H, W, C], model
  space); masks start at 1. ``eps_apply(params, x, t)`` is the same function object for every model of an
  architecture (it keys the compilation). ``callback(i, metrics)`` after each step."""
  groups = tuple(channel_groups(params))
  masks = {g.name: jnp.ones((g.size,), jnp.float32) for g in groups}
  state = OPTIMIZER.init(masks)
  state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
  for i, x0 in enumerate(batches):
    masks, state, metrics = _anp_step(eps_apply, groups, schedule, masks, state, params, jnp.asarray(x0),
                                      jax.random.fold_in(key, i), eps=eps, steps=steps, alpha=alpha)
    if callback is not None:
      callback(i, metrics)
  return {k: np.asarray(v) for k, v in masks.items()}


def anp_prune(params, masks, threshold=0.2):
  """(pruned params, {layer: bool [size]} pruned channels): every channel whose ANP mask is below ``threshold``
  zeroed in all its members."""
  pruned = {k: np.asarray(v) < threshold for k, v in masks.items()}
  mask = channel_mask(params, channel_groups(params), pruned)
  return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, mask), pruned
