"""f∘φ: a classifier behind a diffusion purifier (DiffPure), differentiable end to end.

Pixel-space input x ∈ [0, 1] → model space 2x − 1 → diffuse to t̄ and reverse with any sampler →
back to [0, 1] (clipped) → classifier logits. Gradients: ``gradient='full'`` backpropagates through
every sampler step, rematerialising each step (memory O(one step), not O(t̄)); ``'bpda'`` uses the
identity as the purifier's backward pass (Athalye et al. 2018).

Two forms: closures (``purify_pixels``, ``purified_logits_fn``: weights captured, for interactive use) and
pure, hashable descriptions (``Purifier``, ``PurifiedClassifier``: the architecture and settings, weights
as call arguments) that every task uses, so one compilation serves every parameter set.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff import diffusion
from jaxdiff.models import eps_fn_of


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


@dataclasses.dataclass(frozen=True)
class Purifier:
  """φ as a pure function ``(params, x, key) -> x̂`` (pixel space [0, 1], NHWC): DiffPure with a denoiser
  architecture ``denoiser`` (a flax ε-model ``apply({'params': p}, x_t, t)``), the schedule named by
  (``schedule``, ``num_timesteps``) and the sampler settings. Hashable by value: a static argument."""
  denoiser: nn.Module
  t_bar: int = 75
  sampler: str = "ddpm"
  num_steps: int | None = None
  gradient: str = "full"
  remat: bool = True
  schedule: str = "linear"
  num_timesteps: int = 1000
  options: tuple = ()  # sampler options as sorted (name, value) pairs, e.g. (("eta", 0.0),)
  reproject_eps: float = 0.0  # > 0: x̂ projected into the ℓ∞ ball of this radius around x (DIFF2 Table 8)

  def eps_fn(self, params):
    return eps_fn_of(self.denoiser, params, learned_sigma=dict(self.options).get("variance") == "learned")

  def make_schedule(self):
    return diffusion.make_schedule(self.schedule, self.num_timesteps)

  def __call__(self, params, x, key):
    out = purify_pixels(self.eps_fn(params), self.make_schedule(), x, key, t_bar=self.t_bar, sampler=self.sampler,
                        num_steps=self.num_steps, remat=self.remat, gradient=self.gradient, **dict(self.options))
    if self.reproject_eps > 0:  # re-projection defence: x + clip(x̂ − x, −ε_r, ε_r); attacks differentiate through it
      out = x + jnp.clip(out - x, -self.reproject_eps, self.reproject_eps)
    return out

  def replace(self, **kw) -> "Purifier":
    return dataclasses.replace(self, **kw)


@dataclasses.dataclass(frozen=True)
class PurifiedClassifier:
  """f∘φ as a pure function ``(params, x, key) -> logits``: ``params = {'denoiser': ..., 'classifier': ...}``
  (the U-Net's params and the classifier's variables); x pixel space [0, 1]. Hashable: pass it as
  ``logits_fn`` with ``params=`` to the attacks, or to ``jaxdiff.functional.jit_apply``."""
  purifier: Purifier
  classifier: Any  # a flax classifier module, apply(variables, x) -> logits

  def __call__(self, params, x, key):
    return self.classifier.apply(params["classifier"], self.purifier(params["denoiser"], x, key))
