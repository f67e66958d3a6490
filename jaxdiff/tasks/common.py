"""Pieces the tasks share: building/loading models from configs and exports, fingerprints, samplers."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections

from jaxdiff import diffusion
from jaxdiff.io import load_params, save_params
from jaxdiff.models import build_model, init_variables

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def resolve_path(path):
  """'assets:digits/ddpm' → the shipped asset folder; other paths as given."""
  if path and path.startswith("assets:"):
    return os.path.join(ASSETS, path[len("assets:"):])
  return path


def schedule_from_config(cfg):
  return diffusion.make_schedule(cfg.schedule, cfg.num_timesteps)


def export_model(directory, kind, model_cfg, variables, extra=None):
  """Saves params (+ BatchNorm stats) as safetensors with the model config beside them."""
  meta = {"kind": kind, "model": model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)}
  meta.update(extra or {})
  save_params(directory, dict(variables), meta)


def load_model(path, dtype=None):
  """Loads an export of ``export_model`` or a diffusers UNet2DModel folder.

  Returns (model, variables, meta). ``variables`` holds 'params' (and 'batch_stats' for classifiers).
  """
  path = resolve_path(path)
  if os.path.isfile(os.path.join(path, "meta.json")):
    meta, variables = load_params(path)
    mcfg = ml_collections.ConfigDict(meta["model"])
    if dtype is not None:
      mcfg.dtype = dtype
    return build_model(mcfg), variables, meta
  from jaxdiff.convert import load_diffusers_unet
  model, params = load_diffusers_unet(path, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  meta = {"kind": "unet", "model": {"name": "unet", "source": "diffusers", "path": path},
          "diffusion": {"schedule": "linear", "num_timesteps": 1000}}
  return model, {"params": params}, meta


def init_or_load(model_cfg, key, init_from=None):
  """Fresh variables for ``model_cfg``, or loaded from ``init_from`` (must match the config)."""
  if init_from:
    model, variables, _ = load_model(init_from, dtype=model_cfg.get("dtype"))
    return model, variables
  model = build_model(model_cfg)
  return model, init_variables(model, model_cfg, key)


def eps_fn_of(model, params):
  """ε_θ(x_t, t) with the signature the samplers expect (eval mode)."""
  return lambda x, t: model.apply({"params": params}, x, t)


def sampler_steps(purify_cfg, sampler):
  """Network calls for ``sampler`` from t̄: ``purify.sampler_steps[sampler]``, else ``purify.num_steps``;
  None (every index) when both are 0."""
  own = purify_cfg.get("sampler_steps", {}).get(sampler, 0)
  return int(own or purify_cfg.num_steps) or None


def make_sampler_fn(model, schedule, shape, sampler="ddim", num_steps=100):
  """Jitted ``fn(params, key) -> images in pixel space [0, 1]``."""
  @jax.jit
  def fn(params, key):
    x = diffusion.sample(eps_fn_of(model, params), schedule, key=key, shape=shape, sampler=sampler,
                         num_steps=num_steps)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return fn


def fingerprint(config, *fields):
  """A JSON-able view of the config blocks that must match for a checkpoint to be reusable."""
  out = {}
  for f in fields:
    v = config
    for part in f.split("."):
      v = v[part]
    out[f] = v.to_dict() if hasattr(v, "to_dict") else v
  return out
