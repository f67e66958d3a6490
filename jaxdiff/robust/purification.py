"""f∘φ: a classifier behind a diffusion purifier (DiffPure), differentiable end to end.

Pixel-space input x ∈ [0, 1] → model space 2x − 1 → diffuse to t̄ and reverse with any sampler →
back to [0, 1] (clipped) → classifier logits. Gradients: ``gradient='full'`` backpropagates through
every sampler step, rematerialising each step (memory O(one step), not O(t̄)); ``'bpda'`` uses the
identity as the purifier's backward pass (Athalye et al. 2018).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff import diffusion


def purify_pixels(eps_fn, schedule, x, key, *, t_bar=75, sampler="ddpm", num_steps=None, remat=True,
                  gradient="full", **options):
  """Purifies pixel-space images; returns pixel-space images in [0, 1]."""
  def run(z):
    y = diffusion.purify(eps_fn, schedule, 2.0 * z - 1.0, key=key, t_bar=t_bar, sampler=sampler,
                         num_steps=num_steps, remat=remat, **options)
    return jnp.clip((y + 1.0) / 2.0, 0.0, 1.0)
  if gradient == "full":
    return run(x)
  if gradient == "bpda":
    return x + jax.lax.stop_gradient(run(x) - x)
  raise ValueError(f"unknown gradient mode {gradient!r}; use 'full' or 'bpda'")


def purified_logits_fn(classify, eps_fn, schedule, **purify_kw):
  """Returns ``logits_fn(x, key)`` of f∘φ for the attacks (pass ``stochastic=True`` to them)."""
  def logits_fn(x, key):
    return classify(purify_pixels(eps_fn, schedule, x, key, **purify_kw))
  return logits_fn
