"""Certification throughput: jaxdiff's on-device sharded loop vs a host loop over batches (the reference PyTorch
tools' structure: host noise, one call per batch, labels back to the host), and with ``peer="torch"`` Carlini et
al.'s loop in PyTorch on the same weights (diffusers UNet2DModel + the classifier's torch twin)."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion
from jaxdiff.bench.timing import flops_of, throughput_record
from jaxdiff.functional import jit_apply
from jaxdiff.models import build_model, count_params, init_variables
from jaxdiff.models.adm import ADMUNet, PUBLIC_CHECKPOINTS, create_model_config
from jaxdiff.models.registry import DTYPES
from jaxdiff.robust import DenoisedClassifier, denoising_timestep, sample_counts

CLASSIFIERS = {"resnet50": dict(name="resnet50"), "resnet18": dict(name="resnet18"), "vit": dict(name="vit_small"),
               "tiny": dict(name="cnn", widths=(16, 32))}


def build_denoised_classifier(unet_cfg, cls_cfg, key=0, peer=""):
  """(DenoisedClassifier, random-weight params, parameter count, torch twins or None) for the benchmarks. With
  ``peer="torch"`` the U-Net's weights are diffusers' random ones (``peer.torch_unet``) and the twins are
  (torch U-Net, torch classifier) computing the same functions."""
  unet, clf = build_model(unet_cfg), build_model(cls_cfg)
  params = {"denoiser": init_variables(unet, unet_cfg, jax.random.key(key))["params"],
            "classifier": init_variables(clf, cls_cfg, jax.random.key(key + 1))}
  twins = None
  if peer:
    from jaxdiff.bench.peer import torch_classifier, torch_unet
    torch_u, params["denoiser"] = torch_unet(unet.cfg, params["denoiser"], seed=key)
    twins = (torch_u, torch_classifier(cls_cfg.name, params["classifier"]))
  return DenoisedClassifier(unet, clf), params, count_params(params["denoiser"]) + count_params(
      params["classifier"]["params"]), twins


def peer_parity(base, params, twins, shape, sigma, draws=64):
  """How closely the torch twins compute jaxdiff's denoised classifier: classifier logits relative difference
  on random pixels, and the fraction of equal labels of the whole base classifier on ``draws`` noisy inputs."""
  import torch

  from jaxdiff.bench.peer import torch_denoise_classify, torch_nchw
  x = jax.random.uniform(jax.random.key(5), (draws,) + shape[1:])
  xn = np.array(x + sigma * jax.random.normal(jax.random.key(6), x.shape))
  sched = diffusion.make_schedule(base.schedule, base.num_timesteps)
  t_star = denoising_timestep(sched, sigma)
  with torch.no_grad():
    theirs_logits = twins[1](torch_nchw(x)).numpy()
    theirs = torch_denoise_classify(twins[0].eval(), twins[1], torch_nchw(xn),
                                    torch.tensor(float(sched.alphas_cumprod[t_star])), t_star).argmax(1).numpy()
  ours_logits = np.asarray(base.classifier.apply(params["classifier"], x))
  ours = np.asarray(jit_apply(base, params, jnp.asarray(xn), sigma))
  rel = np.linalg.norm(ours_logits - theirs_logits) / np.linalg.norm(theirs_logits)
  return {"peer_classifier_rel_diff": float(rel),
          "peer_label_agreement": float(np.mean(ours == theirs))}


# Carlini et al.'s CIFAR-10 pipeline (``--pipeline=carlini``): improved diffusion's 50M ADM U-Net (cosine schedule,
# 4,000 steps, learned σ) + ViT-B/16 at 224; "tiny": the same architectures at CPU-test size.
CARLINI = {"cifar": (PUBLIC_CHECKPOINTS["cifar10_uncond_50M_500K"], {}),
           "tiny": (dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
                         attention_resolutions="16"), dict(resolution=64, dim=64, depth=1, heads=1))}


def build_carlini_classifier(size, dtype="float32", peer="", key=0):
  """(DenoisedClassifier, params, parameter count, torch twins or None, classifier config) of Carlini et al.'s
  pipeline at ``size`` ("cifar" | "tiny"); with ``peer="torch"`` the weights are the torch twins' random ones."""
  import ml_collections

  adm_kw, vit_kw = CARLINI[size]
  ccfg = ml_collections.ConfigDict(dict(name="vit_base_patch16_224", image_size=32, in_channels=3, num_classes=10,
                                        dtype=dtype, **vit_kw))
  unet, clf = ADMUNet(create_model_config(**adm_kw, dtype=DTYPES[dtype])), build_model(ccfg)
  base = DenoisedClassifier(unet, clf, schedule="cosine", num_timesteps=4000)
  twins = None
  if peer:
    from jaxdiff.bench.peer import torch_carlini_twins
    full = ml_collections.ConfigDict({**dict(resolution=224, patch=16, dim=768, depth=12, heads=12, num_classes=10,
                                             mean=(0.5,) * 3, std=(0.5,) * 3), **vit_kw})
    *twins, params = torch_carlini_twins(adm_kw, full, seed=key)
    twins = tuple(twins)
  else:
    x = jnp.zeros((1, 32, 32, 3))
    params = {"denoiser": unet.init(jax.random.key(key), x, jnp.zeros((1,)))["params"],
              "classifier": init_variables(clf, ccfg, jax.random.key(key + 1))}
  nparams = count_params(params["denoiser"]) + count_params(params["classifier"]["params"])
  return base, params, nparams, twins, ccfg


def bench_certify_models(unet_cfg, cls_cfg, *, batch, n, dtype="float32", sigma=0.5, iters=1, peer="", carlini="",
                         peer_compile=False):
  """draws/s and s/image at N = n for our loop and for the host-loop baseline, in one run; ``peer="torch"`` adds
  Carlini et al.'s PyTorch loop on the same weights (``peer_compile``: its networks in torch.compile) and
  ``speedup_vs_peer`` to both rows. ``carlini`` ("cifar" | "tiny"): instead of ``unet_cfg`` / ``cls_cfg``, the ADM
  U-Net + ViT-B/16 of ``build_carlini_classifier``."""
  if carlini:
    base, params, nparams, twins, cls_cfg = build_carlini_classifier(carlini, dtype, peer)
    unet_cfg = unet_cfg.copy_and_resolve_references()
    unet_cfg.update(image_size=32, in_channels=3)
  else:
    base, params, nparams, twins = build_denoised_classifier(unet_cfg, cls_cfg, peer=peer)
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
  extra = {"params": nparams, "gflops_per_draw": per_draw and per_draw / 1e9, "speedup_vs_host_loop": base_s / ours}
  if peer:
    from jaxdiff.bench.peer import add_peer, both_peers, peer_certify_seconds, peer_device
    sched = diffusion.make_schedule(base.schedule, base.num_timesteps)
    extra.update(peer_parity(base, params, twins, shape, sigma))
    peer_s, compiled_s = both_peers(
        lambda compile: peer_certify_seconds(*twins, np.asarray(x), sched.betas, sigma=sigma,
                                             t_star=denoising_timestep(sched, sigma), n=n, batch=batch, dtype=dtype,
                                             compile=compile), peer_compile)
    extra["peer_draws_per_sec"] = n / peer_s
    if compiled_s:
      extra["compiled_peer_draws_per_sec"] = n / compiled_s
    rows = ("certify_jaxdiff", "certify_host_loop_baseline")
    add_peer([rec_ours, rec_base], dict.fromkeys(rows, peer_s),
             peer_device(f"Carlini et al.'s loop ("
                         f"{'OpenAI UNetModel + timm ViT' if carlini else 'diffusers UNet2DModel + ' + cls_cfg.name})"
                         + (", eager and torch.compile" if peer_compile else "")),
             dict.fromkeys(rows, compiled_s) if compiled_s else None)
  return extra, [rec_ours, rec_base]
