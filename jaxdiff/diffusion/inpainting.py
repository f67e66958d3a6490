"""Inpainting with any sampler (BadDiffusion App. C): corruptions of an image and its recovery by re-imposing
the known pixels, noised to the current index, after every reverse step. Model space [−1, 1], NHWC."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.diffusion.samplers import reverse
from jaxdiff.diffusion.schedules import Schedule

CORRUPTIONS = ("blur", "line", "box")


def corrupt(x, kind, key, *, noise_std=0.3):
  """(x_corrupted, known mask [H, W, 1], noise_std) of images x [B, H, W, C] (model space):
  "blur" — Gaussian noise of std ``noise_std`` (pixel units; 2× in model space) on every pixel, all known but
  noisy; "line" — a horizontal band of H/8 rows through the middle erased (−1); "box" — a centred H/2 square
  erased. Erased pixels are unknown (mask 0)."""
  b, h, w, c = x.shape
  mask = np.ones((h, w, 1), np.float32)
  if kind == "blur":
    return x + 2.0 * noise_std * jax.random.normal(key, x.shape, jnp.float32), jnp.asarray(mask), noise_std
  if kind == "line":
    k = max(1, h // 8)
    mask[h // 2 - k // 2: h // 2 - k // 2 + k] = 0
  elif kind == "box":
    mask[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 0
  else:
    raise ValueError(f"unknown corruption {kind!r}; choose one of {CORRUPTIONS}")
  mask = jnp.asarray(mask)
  return mask * x - (1.0 - mask), mask, 0.0


def inpaint(eps_fn, schedule: Schedule, x_known, mask, *, key, sampler, num_steps=None, noise_std=0.0,
            x_init=None, **options):
  """Recovers x̂0 (model space) from the known pixels ``x_known`` where ``mask`` is 1: from x_T = ε (or
  ``x_init``, e.g. ε + g to fire a backdoor) the sampler runs back with those pixels re-imposed, noised to
  each step's index. Known pixels that carry Gaussian noise of std ``noise_std`` (pixel units) are only
  re-imposed while the step's noise level exceeds theirs (ᾱ/(1−ᾱ) ≤ 1/(2·noise_std)²)."""
  k_init, k_rev = jax.random.split(key)
  x_t = jax.random.normal(k_init, x_known.shape, jnp.float32) if x_init is None else jnp.asarray(x_init, jnp.float32)
  # first index whose noise-to-signal ratio (1−ᾱ)/ᾱ reaches the pixels' (2·noise_std)² (host float64)
  neg_log_ab = -np.log(np.asarray(schedule.alphas_cumprod, np.float64))
  until = int(np.searchsorted(neg_log_ab, np.log1p((2.0 * noise_std) ** 2))) if noise_std else 0
  return reverse(eps_fn, schedule, x_t, key=k_rev, t_start=schedule.num_timesteps - 1, sampler=sampler,
                 num_steps=num_steps, known=(jnp.asarray(x_known, jnp.float32), mask, until), **options)
