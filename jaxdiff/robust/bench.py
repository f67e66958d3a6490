"""Certification throughput: jaxdiff's on-device sharded loop vs a host loop over batches (the
reference PyTorch tools' structure: host noise, one call per batch, labels back to the host)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.bench import flops_of, throughput_record
from jaxdiff.models import build_model, count_params, init_variables
from jaxdiff.robust import denoised_classifier, sample_counts

CLASSIFIERS = {"resnet50": dict(name="resnet50"), "vit": dict(name="vit_small"),
               "tiny": dict(name="cnn", widths=(16, 32))}


def build_denoised_classifier(unet_cfg, cls_cfg, sigma=0.5, key=0):
  unet = build_model(unet_cfg)
  up = init_variables(unet, unet_cfg, jax.random.key(key))["params"]
  clf = build_model(cls_cfg)
  cv = init_variables(clf, cls_cfg, jax.random.key(key + 1))
  sched = diffusion.linear_schedule()
  eps_fn = lambda x, t: unet.apply({"params": up}, x, t)
  classify = lambda x: clf.apply(cv, x, train=False)
  return denoised_classifier(eps_fn, sched, classify, sigma), count_params(up) + count_params(cv["params"])


def bench_certify_models(unet_cfg, cls_cfg, *, batch, n, dtype="float32", sigma=0.5, iters=1):
  """draws/s and s/image at N = n for our loop and for the host-loop baseline, in one run."""
  base, nparams = build_denoised_classifier(unet_cfg, cls_cfg, sigma)
  shape = (1, unet_cfg.image_size, unet_cfg.image_size, unet_cfg.in_channels)
  x = jax.random.uniform(jax.random.key(2), shape)
  # Ours: one jitted loop over n draws of one image, `batch` draws per network call.
  run = lambda k: sample_counts(base, x, key=k, sigma=sigma, num_classes=10, num=n, batch_size=batch)
  jax.block_until_ready(run(jax.random.key(0)))  # compile
  t = time.perf_counter()
  for i in range(iters):
    jax.block_until_ready(run(jax.random.key(i + 1)))
  ours = (time.perf_counter() - t) / iters
  # FLOPs per draw from one network call of `batch` draws.
  one_call = jax.jit(base)
  xb = jnp.repeat(x, batch, 0)
  flops = flops_of(one_call, xb)
  # Baseline: host loop, host noise, one call per batch, labels copied back, counts on the host.
  jax.block_until_ready(one_call(xb))
  rng = np.random.default_rng(0)
  t = time.perf_counter()
  counts = np.zeros(10, np.int64)
  for s in range(0, n, batch):
    m = min(batch, n - s)
    noisy = np.repeat(np.asarray(x), batch, 0) + sigma * rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
    labels = np.asarray(one_call(jnp.asarray(noisy)))[:m]
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
