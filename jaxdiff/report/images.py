"""PNG image grids (pixel space [0, 1], NHWC)."""
import io

import numpy as np

from jaxdiff.io import atomic_write


def grid(images, ncol=8, pad=1, pad_value=1.0):
  """[N, H, W, C] in [0, 1] → one [rows·(H+pad), ncol·(W+pad), C] image."""
  x = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = x.shape
  ncol = min(ncol, n)
  nrow = -(-n // ncol)
  out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.float32)
  for i in range(n):
    r, col = divmod(i, ncol)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = x[i]
  return out


def save_png(image, path, scale=1):
  """Saves one [H, W, C] image in [0, 1] (C = 1 or 3), upscaled by ``scale`` (nearest)."""
  from PIL import Image
  a = (np.clip(np.asarray(image), 0, 1) * 255 + 0.5).astype(np.uint8)
  if scale > 1:
    a = a.repeat(scale, 0).repeat(scale, 1)
  img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
  buf = io.BytesIO()
  img.save(buf, format="PNG")
  atomic_write(path, buf.getvalue())


def save_grid(images, path, ncol=8, scale=1, rows=None):
  """Saves a grid of images; ``rows``: list of [N, H, W, C] arrays stacked as labelled rows."""
  if rows is not None:
    images = np.concatenate([np.asarray(r) for r in rows], 0)
    ncol = len(rows[0])
  save_png(grid(images, ncol), path, scale)
