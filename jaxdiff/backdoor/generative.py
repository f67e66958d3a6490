"""One description of a generative backdoor (BadDiffusion, VillanDiffusion, TrojDiff D2I / In-D2D / Out-D2D):
how it is trained (its loss), how it is fired (the triggered sampling start and reverse process) and what
counts as a hit (its target). Model space [−1, 1], NHWC; DESIGN §6."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import baddiffusion as bd
from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.backdoor.triggers import generative_target, generative_trigger

ATTACKS = ("baddiffusion", "villandiffusion", "trojdiff_d2i", "trojdiff_in_d2d", "trojdiff_out_d2d")


@dataclasses.dataclass(frozen=True)
class GenerativeBackdoor:
  """``trigger``: g (BadDiffusion/VillanDiffusion, −1 outside the trigger) or TrojDiff's δ, [H, W, C];
  ``target``: the target image [H, W, C] (None for the D2D attacks, whose target is ``target_class``)."""
  attack: str
  trigger: np.ndarray
  target: np.ndarray | None = None
  target_class: int | None = None
  poison_rate: float = 0.1
  psi: float = 1.0          # VillanDiffusion's ψ (1: BadDiffusion's ρ_t)
  solver: str = "sde"       # the sampler family the correction is made for: "sde" | "ode"
  gamma: float = 1.0        # TrojDiff's γ

  @property
  def trojan(self):
    return self.attack.startswith("trojdiff")

  def loss(self, schedule):
    """``loss_fn`` for ``make_train_step``; D2D attacks read their target bank from the step's ``frozen``."""
    if self.trojan:
      return tj.trojdiff_loss(schedule, self.trigger, self.gamma, self.poison_rate,
                              None if self.target is None else self.target)
    return bd.baddiffusion_loss(schedule, self.trigger, self.target, self.poison_rate, self.psi, self.solver)

  def start(self, key, shape, trigger=None):
    """Triggered x_T: ε + g, or TrojDiff's γε + (1 − γ)δ (``trigger`` overrides the stored one, e.g. traced)."""
    trigger = self.trigger if trigger is None else trigger
    if self.trojan:
      return tj.trojan_noise(key, shape, trigger, self.gamma)
    return bd.triggered_noise(key, shape, trigger)

  def reverse(self, eps_fn, schedule, x_init, *, key, sampler, num_steps=None, trigger=None, **options):
    """x̂0 from the triggered start through the attack's reverse process (TrojDiff's for trojan attacks)."""
    if self.trojan:
      return tj.trojan_sample(eps_fn, schedule, x_init, key=key, trigger=self.trigger if trigger is None else trigger,
                              gamma=self.gamma, sampler=sampler, num_steps=num_steps, **options)
    return diffusion.sample(eps_fn, schedule, key=key, sampler=sampler, num_steps=num_steps, x_init=x_init, **options)


def make_backdoor(attack, image_size, channels, *, trigger="stop_sign", trigger_size=14, target="hat",
                  target_class=0, poison_rate=0.1, psi=1.0, solver=None, trojan_trigger="blend"):
  """A ``GenerativeBackdoor`` from names: ``trigger``/``trigger_size``/``target`` as BadDiffusion's patterns
  (``generative_trigger`` / ``generative_target``); TrojDiff uses ``trojan_trigger`` ("blend" γ 0.6 |
  "patch" γ 0.1), ``target`` (D2I) or ``target_class`` (D2D). ``solver`` defaults to "ode" for VillanDiffusion
  and "sde" for BadDiffusion (which is VillanDiffusion at ψ = 1, SDE)."""
  if attack not in ATTACKS:
    raise ValueError(f"unknown generative backdoor {attack!r}; choose one of {ATTACKS}")
  if attack.startswith("trojdiff"):
    delta = tj.trojdiff_trigger(trojan_trigger, image_size, channels, trigger_size)
    y = generative_target(target, image_size, channels) if attack == "trojdiff_d2i" else None
    return GenerativeBackdoor(attack, delta, y, None if y is not None else int(target_class), poison_rate,
                              gamma=tj.TRIGGER_KINDS[trojan_trigger])
  g = generative_trigger(trigger, trigger_size, image_size, channels)
  y = generative_target(target, image_size, channels, trigger, trigger_size)
  solver = solver or ("ode" if attack == "villandiffusion" else "sde")
  if attack == "baddiffusion" and (psi != 1.0 or solver != "sde"):
    raise ValueError("BadDiffusion is ψ = 1 with the SDE correction; use attack='villandiffusion' for others")
  return GenerativeBackdoor(attack, g, y, None, poison_rate, psi=psi, solver=solver)


def sample_triggered(backdoor, eps_fn, schedule, key, n, *, sampler, num_steps=None, **options):
  """n triggered samples (model space) of ``backdoor``: its start, then its reverse process."""
  k_init, k_rev = jax.random.split(key)
  x_init = backdoor.start(k_init, (n,) + backdoor.trigger.shape)
  return backdoor.reverse(eps_fn, schedule, jnp.asarray(x_init), key=k_rev, sampler=sampler, num_steps=num_steps,
                          **options)
