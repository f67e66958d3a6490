"""What the tasks share: configs → schedules, models, purifiers and evaluation subsets; fingerprints."""
from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import attacks, diffusion
from jaxdiff.convert import load_model, model_digest
from jaxdiff.fingerprints import OVERWRITE_HINT, differences
from jaxdiff.io import is_writer
from jaxdiff.data import make_source
from jaxdiff.errors import ConfigError
from jaxdiff.models import build_model, eps_fn_of, init_variables, penultimate_features
from jaxdiff.robust import Purifier
from jaxdiff.train import IncompatibleCheckpointError


def schedule_from_config(cfg):
  """The diffusion schedule of a ``diffusion`` block (``schedule``, ``num_timesteps``)."""
  return diffusion.make_schedule(cfg.schedule, cfg.num_timesteps)


def init_or_load(model_cfg, key):
  """(module, variables, model config dict): fresh for ``model_cfg``, or loaded from ``model_cfg.init_from``
  (then the dict is the loaded model's own, which its fine-tuned exports record)."""
  if model_cfg.init_from:
    model, variables, meta = load_model(model_cfg.init_from, dtype=model_cfg.dtype, what="config.model.init_from")
    return model, variables, meta["model"]
  model = build_model(model_cfg)
  return model, init_variables(model, model_cfg, key), model_cfg.to_dict()


def load_classifier(path, what="config.classifier.path", dtype=None):
  """(module, variables) of an exported classifier; ``module.apply(variables, x)`` gives logits of pixel x.
  ``dtype`` "bfloat16" computes in bf16 (params stay fp32)."""
  model, variables, _ = load_model(path, dtype=dtype or None, kind="classifier", what=what)
  return model, variables


def load_denoiser(config):
  """(U-Net module, params, meta) of ``config.purify.denoiser`` (a jaxdiff export or a diffusers folder)."""
  model, variables, meta = load_model(config.purify.denoiser, dtype=config.purify.dtype or None, kind="unet",
                                      what="config.purify.denoiser")
  mcfg = meta.get("model", {})
  if config.purify.get("ddpm_variance") == "learned" and not (mcfg.get("name") == "adm" and mcfg.get("learn_sigma")):
    raise ConfigError(f"purify.ddpm_variance = 'learned' needs a learned-σ denoiser (an OpenAI ADM export with "
                      f"learn_sigma, launch/convert.py --kind=openai); {config.purify.denoiser!r} predicts ε only: "
                      "use 'posterior' or 'beta'")
  return model, variables["params"], meta


def sampler_steps(purify_cfg, sampler):
  """Network calls for ``sampler`` from t̄: ``purify.sampler_steps[sampler]``, else ``purify.num_steps``;
  None (every index) when both are 0."""
  return int(purify_cfg.sampler_steps[sampler] or purify_cfg.num_steps) or None


def purifier_from_config(config, denoiser, sampler, **override):
  """The ``Purifier`` (DiffPure φ) of ``config.purify`` for one sampler; ``override`` replaces fields
  (e.g. ``t_bar`` for Figure 4, ``num_steps=1`` for one-step denoising)."""
  p = config.purify
  pur = Purifier(denoiser, t_bar=p.t_bar, sampler=sampler, num_steps=sampler_steps(p, sampler), gradient=p.gradient,
                 remat=p.remat, schedule=p.diffusion.schedule, num_timesteps=p.diffusion.num_timesteps,
                 reproject_eps=float(p.reproject_eps),
                 options=(("variance", p.ddpm_variance),) if sampler == "ddpm" and p.ddpm_variance != "posterior"
                 else ())
  return pur.replace(**override)


def attack_fn(logits, params, a, attack, stochastic):
  """``fn(x, y, key) -> x_adv``: ``attack`` ("pgd" | "autoattack") with the settings of ``config.attack``
  (``a``) on the pure ``logits(params, x[, key])``; compiled once per ``logits`` (not per weights)."""
  if attack == "pgd":
    return lambda xb, yb, k: attacks.pgd_jit(logits, xb, yb, key=k, eps=a.eps, steps=a.pgd_steps, norm=a.norm,
                                             eot=a.eot if stochastic else 1, stochastic=stochastic, params=params)
  return lambda xb, yb, k: attacks.autoattack(
      logits, xb, yb, key=k, eps=a.eps, norm=a.norm, version=a.autoattack_version, steps=a.aa_steps,
      n_target_classes=a.aa_targets, square_queries=a.aa_queries, eot_iter=a.eot, stochastic=stochastic, params=params)


def eval_subset(config):
  """(x, y, idx): every ``eval.stride``-th test image, the first ``eval.num_examples`` of them (pixel space)."""
  src = make_source(config.data, "test")
  idx = np.arange(0, len(src), config.eval.stride)[:config.eval.num_examples]
  x, y = src.get(idx)
  return x, y, idx


def make_sampler_fn(model, schedule, shape, sampler="ddim", num_steps=100):
  """Jitted ``fn(params, key) -> images in pixel space [0, 1]`` (generation from x_T ~ N(0, I))."""
  @jax.jit
  def fn(params, key):
    x = diffusion.sample(eps_fn_of(model, params), schedule, key=key, shape=shape, sampler=sampler,
                         num_steps=num_steps)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return fn


def fingerprint(config, *fields, models=None):
  """A JSON-able view of the config fields (dotted paths) that must match for a checkpoint or a result to be
  reusable; ``models`` {name: folder} adds the digests of the model files the result was computed with."""
  out = {}
  for f in fields:
    v = config
    for part in f.split("."):
      v = v[part]
    out[f] = v.to_dict() if hasattr(v, "to_dict") else v
  if models:
    out["models"] = {name: model_digest(path) for name, path in models.items()}
  return out


CERTIFY_FIELDS = ("seed", "data", "purify.diffusion", "certify.n", "certify.n0", "certify.alpha", "certify.num_classes",
                  "certify.batch_size", "certify.denoise_steps")  # what a CERTIFY row depends on, besides σ


def reuse_export(export_dir, fp, overwrite, steps=None):
  """Params of a finished fine-tune's export when it was made under ``fp`` (its meta.json's "fingerprint") and,
  given ``steps``, after that many steps (else None: the caller's ``fit`` resumes from its checkpoints). An export
  of other settings is refused, or removed with ``overwrite``."""
  if not os.path.exists(os.path.join(export_dir, "meta.json")):
    return None
  _, variables, meta = load_model(export_dir, kind="unet")
  old = meta.get("fingerprint", meta.get("finetune_fingerprint", fp))  # older exports may carry none: accepted
  if old == fp:
    return None if steps is not None and meta.get("steps", steps) != steps else variables["params"]
  if not overwrite:
    raise IncompatibleCheckpointError(f"{export_dir} was fine-tuned with other settings "
                                   f"({'; '.join(differences(old, fp)[:4])}): {OVERWRITE_HINT}")
  if is_writer():
    shutil.rmtree(export_dir)
  return None


def fid_feature_fn(kind, classifier, inception_weights, where):
  """(fn(images pixel [N, H, W, C]) -> features [N, D], description) for the FID: the penultimate layer of the
  classifier export ``classifier`` (kind "classifier"), or Inception-v3 pool3 (kind "inception", pytorch-fid's
  network from ``inception_weights``). ``where``: the config block, for messages."""
  if kind == "classifier":
    module, variables = load_classifier(classifier, f"{where}.fid_classifier")
    apply = jax.jit(penultimate_features, static_argnums=0)
    fn = lambda x: np.concatenate([np.asarray(apply(module, variables, x[i:i + 512])) for i in range(0, len(x), 512)])
    return fn, f"penultimate features of the classifier {classifier}"
  from jaxdiff.convert import load_inception_features
  return load_inception_features(inception_weights), "Inception-v3 pool3 (pytorch-fid's network)"
