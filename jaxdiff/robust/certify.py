"""Randomised smoothing: CERTIFY and PREDICT of Cohen et al. (2019), and diffusion denoised smoothing
(Carlini et al. 2023).

Throughput: noise is drawn on device inside one jitted loop over chunks of draws; each chunk holds
``batch_size`` draws (all images of the batch × draws per image), sharded over the mesh's 'data'
axis; votes are summed on device (an all-reduce across devices) and only the [B, K] counts return.
One compilation serves every batch of the same shape.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from scipy.stats import beta as beta_dist, binomtest, norm

from jaxdiff import diffusion
from jaxdiff.models import eps_fn_of
from jaxdiff.parallel import make_mesh

ABSTAIN = -1


def clopper_pearson_lower(count, n, alpha):
  """One-sided (1 − α) lower confidence bound on a binomial proportion: Beta(α; k, n − k + 1)."""
  count = np.asarray(count)
  return np.where(count > 0, beta_dist.ppf(alpha, np.maximum(count, 1), n - count + 1), 0.0)


@functools.lru_cache(maxsize=64)
def _counts_fn(base_classifier, with_params, num, per_image, num_classes, mesh):
  """Jitted ``(params, x, key, sigma) -> counts[B, K]`` for ``num`` draws per image, ``per_image`` at a time.
  Cached on the classifier's identity (a hashable pure function when ``with_params``) and the static
  sizes: weights and σ are arguments, so every parameter set and every σ share one compilation."""
  chunks = -(-num // per_image)
  sh = NamedSharding(mesh, P("data"))

  def fn(params, x, key, sigma):
    b = x.shape[0]
    classify = (lambda z: base_classifier(params, z, sigma)) if with_params else base_classifier

    def body(i, counts):
      noise = jax.random.normal(jax.random.fold_in(key, i), (b * per_image,) + x.shape[1:], jnp.float32)
      noise = jax.lax.with_sharding_constraint(noise, sh)
      xs = jnp.repeat(x, per_image, axis=0) + sigma * noise
      labels = classify(xs).reshape(b, per_image)
      valid = (i * per_image + jnp.arange(per_image)) < num  # the last chunk may overshoot num
      votes = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * valid[None, :, None]
      return counts + votes.sum(1)

    return jax.lax.fori_loop(0, chunks, body, jnp.zeros((b, num_classes), jnp.int32))

  return jax.jit(fn)


def sample_counts(base_classifier, x, *, key, sigma, num_classes, num, batch_size=None, mesh=None, params=None):
  """Vote counts [B, K] of the base classifier on x + σ·z over ``num`` draws per image.

  ``base_classifier(x_noisy) -> labels`` (a closure), or with ``params`` a pure
  ``base_classifier(params, x_noisy, sigma) -> labels`` hashable by value (e.g. ``DenoisedClassifier``).
  """
  mesh = make_mesh() if mesh is None else mesh
  ndev = mesh.devices.size
  x = jnp.asarray(x, jnp.float32)
  b = x.shape[0]
  batch_size = batch_size or 1000
  per_image = max(1, min(num, batch_size // b))
  while (per_image * b) % ndev:  # the draws of a chunk split evenly over the devices
    per_image += 1
  fn = _counts_fn(base_classifier, params is not None, int(num), int(per_image), int(num_classes), mesh)
  return fn(params, x, key, jnp.float32(sigma))


def certify(base_classifier, x, *, key, sigma, num_classes, n0=100, n=10_000, alpha=0.001, batch_size=None,
            mesh=None, params=None):
  """CERTIFY (Cohen et al. Alg. 1) for a batch x (NHWC, pixel space [0, 1]); noise N(0, σ²I) is added here.
  ``base_classifier``/``params``: see ``sample_counts``.

  Returns numpy (prediction[B], radius[B], count[B]): prediction −1 abstains (radius 0); count is the
  number of the n estimation draws that voted for the class chosen from the n0 selection draws.
  """
  k0, k1 = jax.random.split(key)
  kw = dict(sigma=sigma, num_classes=num_classes, batch_size=batch_size, mesh=mesh, params=params)
  c_hat = np.asarray(jnp.argmax(sample_counts(base_classifier, x, key=k0, num=n0, **kw), 1))
  counts = np.asarray(sample_counts(base_classifier, x, key=k1, num=n, **kw))
  n_a = counts[np.arange(len(c_hat)), c_hat]
  p_a = clopper_pearson_lower(n_a, n, alpha)
  ok = p_a > 0.5
  radius = np.where(ok, sigma * norm.ppf(np.clip(p_a, 0.5, 1 - 1e-16)), 0.0)
  return np.where(ok, c_hat, ABSTAIN), radius, n_a


def predict(base_classifier, x, *, key, sigma, num_classes, n=100, alpha=0.001, batch_size=None, mesh=None,
            params=None):
  """PREDICT (Cohen et al. Alg. 1): the top class unless a two-sided binomial test at α fails (−1)."""
  counts = np.asarray(sample_counts(base_classifier, x, key=key, sigma=sigma, num_classes=num_classes, num=n,
                                    batch_size=batch_size, mesh=mesh, params=params))
  top2 = np.argsort(-counts, 1)[:, :2]
  n_a, n_b = counts[np.arange(len(counts)), top2[:, 0]], counts[np.arange(len(counts)), top2[:, 1]]
  p = np.array([binomtest(int(a), int(a + b), 0.5).pvalue if a + b else 1.0 for a, b in zip(n_a, n_b)])
  return np.where(p <= alpha, top2[:, 0], ABSTAIN)


def denoising_timestep(schedule, sigma):
  """Integer index t* whose ᾱ is closest to 1/(1 + (2σ)²) (model-space noise 2σ; Carlini et al.)."""
  return int(np.round(float(schedule.sigma_to_index(2.0 * sigma))))


def _denoise_and_classify(eps_fn, schedule, classify, x_noisy, sigma, *, num_steps, sampler, clip):
  """Noisy pixels x + σz → x_{t*} = √ᾱ_{t*}(2(x + σz) − 1) → x̂0 (one shot, or ``num_steps`` deterministic
  reverse steps) → pixels → argmax of ``classify``. σ may be traced: t* is computed on the device."""
  t_star = jnp.round(schedule.sigma_to_index(2.0 * jnp.asarray(sigma, jnp.float32)))
  x_t = jnp.sqrt(jnp.asarray(schedule.alphas_cumprod)[t_star.astype(jnp.int32)]) * (2.0 * x_noisy - 1.0)
  if num_steps == 1:
    x0 = diffusion.one_step_denoise(eps_fn, schedule, x_t, t_star, clip=clip)
  else:
    x0 = diffusion.reverse(eps_fn, schedule, x_t, key=jax.random.key(0), t_start=t_star, sampler=sampler,
                           num_steps=num_steps, clip_x0=clip)
  return jnp.argmax(classify(jnp.clip((x0 + 1.0) / 2.0, 0.0, 1.0)), -1)


def _check_denoising_steps(num_steps, sampler):
  if num_steps > 1 and sampler not in ("ddim", "ode", "dpm_solver++"):
    raise ValueError("multi-step denoising inside smoothing must be deterministic: sampler 'ddim', 'ode' or "
                     "'dpm_solver++'")


def denoised_classifier(eps_fn, schedule, classify, sigma, *, num_steps=1, sampler="ddim", clip=True):
  """Base classifier for smoothing (a closure over the weights and σ): x + σz → labels, see
  ``DenoisedClassifier`` for the form with weights as arguments."""
  _check_denoising_steps(num_steps, sampler)

  def base(x_noisy):
    return _denoise_and_classify(eps_fn, schedule, classify, x_noisy, sigma, num_steps=num_steps, sampler=sampler,
                                 clip=clip)

  base.t_star = denoising_timestep(schedule, sigma)
  return base


@dataclasses.dataclass(frozen=True)
class DenoisedClassifier:
  """Denoised smoothing's base classifier (Carlini et al. 2023) as a pure function
  ``(params, x_noisy, sigma) -> labels``, ``params = {'denoiser': U-Net params, 'classifier': variables}``;
  x_noisy = x + σz in pixel space. Hashable: pass it to ``certify``/``predict`` with ``params=``, and every
  parameter set and σ share one compilation."""
  denoiser: nn.Module
  classifier: Any
  num_steps: int = 1
  sampler: str = "ddim"
  clip: bool = True
  schedule: str = "linear"
  num_timesteps: int = 1000

  def __post_init__(self):
    _check_denoising_steps(self.num_steps, self.sampler)

  def __call__(self, params, x_noisy, sigma):
    eps_fn = eps_fn_of(self.denoiser, params["denoiser"])
    classify = lambda x: self.classifier.apply(params["classifier"], x)
    return _denoise_and_classify(eps_fn, diffusion.make_schedule(self.schedule, self.num_timesteps), classify,
                                 x_noisy, sigma, num_steps=self.num_steps, sampler=self.sampler, clip=self.clip)
