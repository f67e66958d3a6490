"""Certification throughput: jaxdiff's on-device sharded loop vs a host loop over batches (the
reference PyTorch tools' structure: host noise, one call per batch, labels back to the host)."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.bench.timing import flops_of, throughput_record
from jaxdiff.functional import jit_apply
from jaxdiff.models import build_model, count_params, init_variables
from jaxdiff.robust import DenoisedClassifier, sample_counts

CLASSIFIERS = {"resnet50": dict(name="resnet50"), "vit": dict(name="vit_small"),
               "tiny": dict(name="cnn", widths=(16, 32))}


def build_denoised_classifier(unet_cfg, cls_cfg, key=0):
  """(DenoisedClassifier, random-weight params, parameter count) for the benchmark."""
  unet, clf = build_model(unet_cfg), build_model(cls_cfg)
  params = {"denoiser": init_variables(unet, unet_cfg, jax.random.key(key))["params"],
            "classifier": init_variables(clf, cls_cfg, jax.random.key(key + 1))}
  return DenoisedClassifier(unet, clf), params, count_params(params["denoiser"]) + count_params(
      params["classifier"]["params"])


def bench_certify_models(unet_cfg, cls_cfg, *, batch, n, dtype="float32", sigma=0.5, iters=1):
  """draws/s and s/image at N = n for our loop and for the host-loop baseline, in one run."""
  base, params, nparams = build_denoised_classifier(unet_cfg, cls_cfg)
  shape = (1, unet_cfg.image_size, unet_cfg.image_size, unet_cfg.in_channels)
  x = jax.random.uniform(jax.random.key(2), shape)
  # Ours: one jitted loop over n draws of one image, `batch` draws per network call.
  run = lambda k: sample_counts(base, x, key=k, sigma=sigma, num_classes=10, num=n, batch_size=batch, params=params)
  jax.block_until_ready(run(jax.random.key(0)))  # compile
  t = time.perf_counter()
  for i in range(iters):
    jax.block_until_ready(run(jax.random.key(i + 1)))
  ours = (time.perf_counter() - t) / iters
  # FLOPs per draw from one network call of `batch` draws.
  one_call = functools.partial(jit_apply, base)
  xb = jnp.repeat(x, batch, 0)
  flops = flops_of(jax.jit(base), params, xb, sigma)
  # Baseline: host loop, host noise, one call per batch, labels copied back, counts on the host.
  jax.block_until_ready(one_call(params, xb, sigma))
  rng = np.random.default_rng(0)
  t = time.perf_counter()
  counts = np.zeros(10, np.int64)
  for s in range(0, n, batch):
    m = min(batch, n - s)
    noisy = np.repeat(np.asarray(x), batch, 0) + sigma * rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
    labels = np.asarray(one_call(params, jnp.asarray(noisy), sigma))[:m]
    counts += np.bincount(labels, minlength=10)
  base_s = time.perf_counter() - t
  per_draw = flops / batch if flops else None
  rec_ours = throughput_record("certify_jaxdiff", ours, n, per_draw and per_draw * n, dtype,
                               seconds_per_image=ours, n=n, batch=batch)
  rec_base = throughput_record("certify_host_loop_baseline", base_s, n, per_draw and per_draw * n, dtype,
                               seconds_per_image=base_s, n=n, batch=batch)
  for r in (rec_ours, rec_base):
    r["draws_per_sec"] = r.pop("items_per_sec")
  return {"params": nparams, "gflops_per_draw": per_draw and per_draw / 1e9,
          "speedup_vs_host_loop": base_s / ours}, [rec_ours, rec_base]
