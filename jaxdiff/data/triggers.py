"""The one trigger module. Pixel space [0, 1], NHWC.

- ``blend``: x_r = (1 − α)x + αr (DIFF2 Eq. 4), r full-size, or only inside a k×k ``mask`` (patch trigger);
- ``stamp``: x_r = (1 − M)x + M·pattern (BadNets-style 5×5 patch at the lower right, DIFF2 Alg. 2);
- ``warp``: WaNet-style smooth warping by a fixed random flow field;
- procedural patterns (``checkerboard``, ``sinusoid``) for blending triggers.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def corner_mask(image_size, k, channels=1, corner="lower_right", margin=0):
  """[H, W, 1] mask with ones on a k×k square at a corner (``margin`` pixels in from the edge)."""
  m = np.zeros((image_size, image_size, 1), np.float32)
  lo = image_size - margin - k
  if corner == "lower_right":
    m[lo:lo + k, lo:lo + k] = 1
  elif corner == "upper_left":
    m[margin:margin + k, margin:margin + k] = 1
  else:
    raise ValueError(f"unknown corner {corner!r}")
  return jnp.asarray(m)


def blend(x, r, alpha, mask=None):
  """(1 − α)x + αr, inside ``mask`` only when given."""
  xr = (1.0 - alpha) * x + alpha * r
  return xr if mask is None else mask * xr + (1.0 - mask) * x


def stamp(x, pattern, mask):
  return mask * pattern + (1.0 - mask) * x


def checkerboard(image_size, channels, period=2):
  i = np.add.outer(np.arange(image_size) // period, np.arange(image_size) // period) % 2
  return jnp.asarray(np.repeat(i[..., None], channels, -1).astype(np.float32))


def sinusoid(image_size, channels, freq=3.0):
  u = np.linspace(0, 2 * np.pi * freq, image_size)
  p = 0.5 + 0.5 * np.sin(u[None, :] + 0.5 * u[:, None])
  return jnp.asarray(np.repeat(p[..., None], channels, -1).astype(np.float32))


def warp_field(key, image_size, grid=4, strength=0.5):
  """Smooth flow (WaNet): a random grid×grid field, upsampled, scaled to ``strength`` pixels."""
  f = jax.random.uniform(key, (grid, grid, 2), minval=-1, maxval=1)
  f = f / jnp.mean(jnp.abs(f))
  return jax.image.resize(f, (image_size, image_size, 2), "bicubic") * strength


def warp(x, flow):
  """Bilinear resampling of x [B, H, W, C] at positions (i, j) + flow (clamped to the image)."""
  b, h, w, c = x.shape
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  pi, pj = jnp.clip(ii + flow[..., 0], 0, h - 1), jnp.clip(jj + flow[..., 1], 0, w - 1)
  i0, j0 = jnp.floor(pi).astype(jnp.int32), jnp.floor(pj).astype(jnp.int32)
  i1, j1 = jnp.minimum(i0 + 1, h - 1), jnp.minimum(j0 + 1, w - 1)
  di, dj = (pi - i0)[..., None], (pj - j0)[..., None]
  g = lambda a, b_: x[:, a, b_]
  return ((1 - di) * (1 - dj) * g(i0, j0) + (1 - di) * dj * g(i0, j1) + di * (1 - dj) * g(i1, j0)
          + di * dj * g(i1, j1))


@dataclasses.dataclass(frozen=True)
class Trigger:
  """A trigger as data: ``apply(x)`` maps clean pixel images to trigger inputs."""
  kind: str                      # "blend" (DIFF2 adversarial / blending), "patch", "warp"
  pattern: jnp.ndarray           # r or the stamped/blended pattern, [H, W, C] in [0, 1]
  alpha: float = 0.05
  mask: jnp.ndarray | None = None
  flow: jnp.ndarray | None = None

  def apply(self, x):
    if self.kind == "blend":
      return jnp.clip(blend(x, self.pattern, self.alpha, self.mask), 0.0, 1.0)
    if self.kind == "patch":
      return stamp(x, self.pattern, self.mask)
    if self.kind == "warp":
      return jnp.clip(warp(x, self.flow), 0.0, 1.0)
    raise ValueError(f"unknown trigger kind {self.kind!r}; use blend, patch or warp")


def make_trigger(kind, image_size, channels, *, key, alpha=0.05, patch_size=None, pattern="checkerboard",
                 warp_strength=0.5, r=None):
  """Builds a trigger. ``r`` (optimised, DIFF2) is used for 'blend'; else a procedural ``pattern``."""
  if kind == "blend":
    if r is None:
      r = {"checkerboard": checkerboard, "sinusoid": sinusoid}[pattern](image_size, channels)
    mask = corner_mask(image_size, patch_size) if patch_size else None
    return Trigger("blend", jnp.asarray(r), alpha, mask)
  if kind == "patch":
    k = patch_size or 5
    return Trigger("patch", checkerboard(image_size, channels, 1), 1.0, corner_mask(image_size, k))
  if kind == "warp":
    return Trigger("warp", jnp.zeros((image_size, image_size, channels)), 1.0,
                   flow=warp_field(key, image_size, strength=warp_strength))
  raise ValueError(f"unknown trigger kind {kind!r}")
