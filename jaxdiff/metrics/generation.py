"""Metrics of generated images: MSE and SSIM against a target (pixel space [0, 1]), the MSE-threshold attack
success rate of a generative backdoor, and the Fréchet distance between feature statistics (FID)."""
from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np


def mse_per_sample(images, target):
  """[N] mean squared error of each image against ``target`` ([H, W, C] or [N, H, W, C]), pixel space."""
  images = jnp.asarray(images, jnp.float32)
  return np.asarray(jnp.mean((images - jnp.asarray(target, jnp.float32)) ** 2, axis=tuple(range(1, images.ndim))))


def ssim_per_sample(images, target, filter_size=11):
  """[N] SSIM (Wang et al. 2004; Gaussian window σ 1.5, dm-pix) of each image against ``target``, pixel space
  [0, 1] (data range 1). The window shrinks to the image side for images smaller than 11 px."""
  images = jnp.asarray(images, jnp.float32)
  target = jnp.broadcast_to(jnp.asarray(target, jnp.float32), images.shape)
  size = min(filter_size, images.shape[1], images.shape[2])
  size -= 1 - size % 2  # odd
  return np.asarray(jax.jit(lambda a, b: dm_pix.ssim(a, b, max_val=1.0, filter_size=size))(images, target))


def mse_attack_success_rate(mse, threshold=1e-3):
  """Fraction of triggered samples whose MSE to the target is below ``threshold`` (Diff-Cleanse's κ_m 1e-3;
  BadDiffusion's CIFAR runs use 0.05)."""
  return float(np.mean(np.asarray(mse) < threshold))


def feature_statistics(features):
  """(mean [D], covariance [D, D]) of features [N, D], float64 (N − 1 normalisation, as pytorch-fid)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"need features [N ≥ 2, D], got {f.shape}")
  return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1 Σ2)^½) (Heusel et al. 2017). Tr((Σ1Σ2)^½) is the sum of the square roots
  of the eigenvalues of Σ1^½ Σ2 Σ1^½ (symmetric PSD: a stable eigh, no complex sqrtm)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  w, v = np.linalg.eigh((s1 + s1.T) / 2)
  root1 = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
  m = root1 @ s2 @ root1
  tr_covmean = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh((m + m.T) / 2), 0.0)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid(features_a, features_b):
  """Fréchet distance between two sets of features [N, D] (e.g. Inception pool3, or a classifier's
  penultimate layer for small datasets)."""
  return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))
