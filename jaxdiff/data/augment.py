"""On-device data augmentation, inside the jitted train step (no host work per batch)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(images, key, pad=4):
  """The standard CIFAR augmentation: each image zero-padded by ``pad`` pixels on every side, a random
  H×W crop of it, and a horizontal flip with probability ½. ``images``: [N, H, W, C] (any space; the padding is
  0, black in pixel space [0, 1]); the same shape out. Deterministic in ``key``."""
  n, h, w, _ = images.shape
  k_off, k_flip = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(k_off, (n, 2), 0, 2 * pad + 1)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1])))(padded, offsets)
  flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
  return jnp.where(flip, crop[:, :, ::-1], crop)
