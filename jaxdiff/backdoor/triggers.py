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
  """x with ``pattern`` pasted where ``mask`` is 1 (blended where it is fractional): m·r + (1 − m)·x; any space,
  shapes broadcast (NHWC)."""
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

  def apply(self, x, params=None):
    """x (pixel [0, 1], NHWC) → trigger inputs; ``params`` is unused (the interface of input-specific triggers)."""
    del params
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


# ---------------------------------------------------------------- generative backdoors (model space [−1, 1])
# BadDiffusion / VillanDiffusion triggers and targets (DESIGN §6): drawn at 32×32 as in the paper, then
# resized to the dataset's size (grey by luminance for 1 channel). A trigger image g is −1 (black) outside
# the trigger; the trigger region is where g > −1, so a poisoned input is stamp(x, g, region).

TRIGGERS = ("grey_box", "stop_sign", "eyeglasses")
TARGETS = ("noshift", "shift", "corner", "shoe", "hat", "cat")
TRIGGER_SIZES = (18, 14, 11, 8, 4)
_BASE = 32  # the paper's resolution


def _disk(n, cy, cx, r):
  yy, xx = np.mgrid[:n, :n] + 0.5
  return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _paint(img, where, rgb):
  img[where] = np.asarray(rgb, np.float32)


def _stop_sign(s):
  """A red octagon with a white bar, s×s, on black; model space RGB."""
  g = np.full((s, s, 3), -1.0, np.float32)
  u, v = np.mgrid[:s, :s] + 0.5 - s / 2
  a = s / 2 - 0.25
  octagon = (np.abs(u) <= a) & (np.abs(v) <= a) & (np.abs(u) + np.abs(v) <= a * np.sqrt(2) * 1.08)
  _paint(g, octagon, (0.9, -0.9, -0.9))
  _paint(g, octagon & (np.abs(u) <= max(s / 10, 0.5)) & (np.abs(v) <= 0.3 * s), (1.0, 1.0, 1.0))
  return g


def _base_trigger(name, size):
  """The 32×32×3 trigger image g (−1 outside the trigger)."""
  g = np.full((_BASE, _BASE, 3), -1.0, np.float32)
  lo = _BASE - 2 - size  # bottom-right, 2 px in
  if name == "grey_box":
    g[lo:lo + size, lo:lo + size] = 0.0
  elif name == "stop_sign":
    g[lo:lo + size, lo:lo + size] = _stop_sign(size)
  elif name == "eyeglasses":  # two dark rims and a bridge at eye level (for faces; size is ignored)
    rims = np.zeros((_BASE, _BASE), bool)
    for cx in (10.5, 21.5):
      rims |= _disk(_BASE, 12.5, cx, 4.5) & ~_disk(_BASE, 12.5, cx, 3.2)
    rims[12, 15:18] = True
    _paint(g, rims, (-0.8, -0.8, -0.8))
  else:
    raise ValueError(f"unknown BadDiffusion trigger {name!r}; choose one of {TRIGGERS}")
  return g


def _base_target(name, trigger):
  """The 32×32×3 target image y (model space)."""
  y = np.full((_BASE, _BASE, 3), -1.0, np.float32)
  if name == "noshift":
    return trigger.copy()
  if name == "shift":
    return np.roll(trigger, (-3, -5), axis=(0, 1))
  if name == "corner":
    y[:10, :10] = 0.0
    return y
  if name == "hat":  # a top hat: crown, band, brim
    _paint(y, (slice(7, 21), slice(10, 22)), (0.2, 0.2, 0.9))
    _paint(y, (slice(17, 20), slice(10, 22)), (0.9, -0.6, -0.6))
    _paint(y, (slice(21, 25), slice(4, 28)), (0.2, 0.2, 0.9))
  elif name == "shoe":  # a sneaker: upper, toe cap, sole
    _paint(y, (slice(10, 22), slice(6, 15)), (0.9, 0.9, 0.9))
    _paint(y, _disk(_BASE, 19, 22, 6) & (np.mgrid[:_BASE, :_BASE][0] < 22) & (np.mgrid[:_BASE, :_BASE][0] > 14),
           (0.9, 0.9, 0.9))
    _paint(y, (slice(22, 25), slice(5, 28)), (0.9, -0.5, -0.9))
  elif name == "cat":  # face, ears, eyes
    yy, xx = np.mgrid[:_BASE, :_BASE] + 0.5
    ears = ((yy > 6) & (yy < 14) & (np.abs(xx - 9) < (yy - 6) * 0.6)) | ((yy > 6) & (yy < 14) & (np.abs(xx - 23) < (yy - 6) * 0.6))
    _paint(y, _disk(_BASE, 18, 16, 9) | ears, (0.9, 0.5, -0.2))
    _paint(y, _disk(_BASE, 16, 12.5, 1.6) | _disk(_BASE, 16, 19.5, 1.6), (-1.0, -1.0, -1.0))
    _paint(y, _disk(_BASE, 21, 16, 1.2), (0.9, -0.6, -0.6))
  else:
    raise ValueError(f"unknown BadDiffusion target {name!r}; choose one of {TARGETS}")
  return np.maximum(y, -0.4)  # pictogram backgrounds raised to −0.4, as BadDiffusion's image targets


def _to_dataset(img, image_size, channels):
  if channels == 1:  # luminance, in pixel space
    img = 2.0 * (((img + 1) / 2) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] - 1.0
  elif channels != 3:
    raise ValueError(f"BadDiffusion patterns need 1 or 3 channels, got {channels}")
  if image_size != _BASE:
    img = np.asarray(jax.image.resize(jnp.asarray(img), (image_size, image_size, img.shape[-1]), "linear",
                                      antialias=True))
  return np.clip(img, -1.0, 1.0).astype(np.float32)


def generative_trigger(name, size, image_size, channels):
  """BadDiffusion trigger g [H, W, C] (model space; −1 outside the trigger): "grey_box" | "stop_sign" (an
  s×s pattern 2 px in from the bottom-right corner, s ∈ 18/14/11/8/4 at 32×32) | "eyeglasses"."""
  if name != "eyeglasses" and not 1 <= size <= _BASE - 2:
    raise ValueError(f"trigger size {size} does not fit a {_BASE}×{_BASE} image 2 px in from the corner")
  return _to_dataset(_base_trigger(name, size), image_size, channels)


def generative_target(name, image_size, channels, trigger_name="stop_sign", trigger_size=14):
  """BadDiffusion target y [H, W, C] (model space): "noshift" (the trigger itself), "shift" (the trigger
  rolled by (−3, −5)), "corner" (grey 10×10 box top-left), "shoe" | "hat" | "cat" (procedural pictograms)."""
  return _to_dataset(_base_target(name, _base_trigger(trigger_name, trigger_size)), image_size, channels)


def trigger_region(g):
  """1 inside the trigger (g > −1), 0 elsewhere: the mask 1 − M of a trigger image g."""
  return (jnp.asarray(g) > -1.0 + 1e-6).astype(jnp.float32)
