"""jaxdiff's own model files and the one loader every task uses.

An export is a folder with ``params.safetensors`` (flat ``a/b/c`` keys, fp32, no pickle) and ``meta.json``
(``kind``: "unet" | "classifier", ``model``: the ``config.model`` block that builds the network, plus
provenance such as the diffusion schedule or the fine-tuning fingerprint). ``load_model`` also reads
diffusers ``UNet2DModel`` folders. Every file is checked before use: unreadable or truncated tensors,
a meta.json that does not describe the tensors, and non-finite weights are refused with the file's name.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff.convert.diffusers import find_weights, load_diffusers_unet
from jaxdiff.convert.fetch import fetch, is_reference
from jaxdiff.convert.files import check_finite, flatten_params, read_safetensors, unflatten_params
from jaxdiff.errors import ModelFileError
from jaxdiff.fingerprints import file_digest
from jaxdiff.io import atomic_write, write_json
from jaxdiff.models import build_model, init_variables, unet_config_dict

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
PARAMS_FILE, META_FILE = "params.safetensors", "meta.json"


def resolve_path(path, what="model"):
  """'assets:digits/ddpm' → the shipped asset folder; an ``hf:`` / ``url:`` reference → its local copy, fetched
  on first use (``convert.fetch``); other paths as given."""
  if path and path.startswith("assets:"):
    return os.path.join(ASSETS, path[len("assets:"):])
  if is_reference(path):
    return fetch(path, what)[0]
  return path


def save_params(directory, params, meta: dict):
  """Exports a parameter tree as ``params.safetensors`` (no pickle) and ``meta.json``, atomically.
  Non-finite parameters are never written."""
  from safetensors.numpy import save
  flat = {k: np.ascontiguousarray(v, np.float32) for k, v in flatten_params(params).items()}
  check_finite(flat, f"refusing to export to {directory}")
  atomic_write(os.path.join(directory, PARAMS_FILE), save(flat))
  write_json(os.path.join(directory, META_FILE), meta)


def load_params(directory):
  """Reads an export of ``save_params`` → (meta dict, params tree of jnp arrays)."""
  st, mj = os.path.join(directory, PARAMS_FILE), os.path.join(directory, META_FILE)
  if not (os.path.isfile(st) and os.path.isfile(mj)):
    raise ModelFileError(f"{directory!r} is not a jaxdiff export (needs {PARAMS_FILE} and {META_FILE})")
  try:
    with open(mj) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise ModelFileError(f"{mj} is not valid JSON ({e})") from e
  return meta, jax.tree_util.tree_map(jnp.asarray, unflatten_params(read_safetensors(st)))


def export_model(directory, kind, model_cfg, variables, extra=None):
  """Saves variables (params, and BatchNorm stats for classifiers) with the model config beside them."""
  meta = {"kind": kind, "model": model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)}
  meta.update(extra or {})
  save_params(directory, dict(variables), meta)


def _check_against_meta(directory, model, mcfg, variables):
  """The tensors must be exactly those the meta.json's model config builds (names and shapes)."""
  shape = lambda v: tuple(v.shape)
  want = flatten_params(jax.eval_shape(lambda k: init_variables(model, mcfg, k), jax.random.key(0)), shape)
  have = flatten_params(variables, shape)
  where = os.path.join(directory, META_FILE)
  for k in sorted(set(want) | set(have)):
    if k not in have:
      raise ModelFileError(f"{where} describes parameter {k!r} {want[k]} that {PARAMS_FILE} lacks: "
                           "the meta.json does not belong to these weights")
    if k not in want:
      raise ModelFileError(f"{PARAMS_FILE} holds {k!r} {have[k]} that the model of {where} does not have: "
                           "the meta.json does not belong to these weights")
    if want[k] != have[k]:
      raise ModelFileError(f"{where}: parameter {k!r} has shape {have[k]} in {PARAMS_FILE} but {want[k]} in the "
                           "model meta.json describes; the meta.json does not belong to these weights")


def load_model(path, dtype=None, *, kind=None, what="model"):
  """Loads an export of ``export_model`` or a diffusers UNet2DModel folder → (model, variables, meta).

  ``variables`` holds 'params' (and 'batch_stats' for classifiers). ``kind`` ("unet" | "classifier"), when
  given, is checked; ``what`` names the config field in messages (e.g. "config.classifier.path").
  """
  resolved = resolve_path(path, what)
  if not resolved or not os.path.isdir(resolved):
    raise ModelFileError(f"{what} = {path!r}: no such folder; it must be a jaxdiff export "
                         f"({PARAMS_FILE} + {META_FILE})" + (" or a diffusers UNet2DModel folder" if kind != "classifier"
                                                            else ""))
  if os.path.isfile(os.path.join(resolved, META_FILE)):
    meta, variables = load_params(resolved)
    for field in ("kind", "model"):
      if field not in meta:
        raise ModelFileError(f"{os.path.join(resolved, META_FILE)} has no {field!r} field: not a jaxdiff export")
    if kind is not None and meta["kind"] != kind:
      raise ModelFileError(f"{what} = {path!r} is a {meta['kind']} export, but a {kind} is needed here")
    mcfg = ml_collections.ConfigDict(meta["model"])
    if dtype:
      mcfg.dtype = dtype
    try:
      model = build_model(mcfg)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
      raise ModelFileError(f"{os.path.join(resolved, META_FILE)}: its model config does not build a network ({e})") from e
    _check_against_meta(resolved, model, mcfg, variables)
    return model, variables, meta
  if kind == "classifier":
    raise ModelFileError(f"{what} = {path!r} has no {META_FILE}: a classifier must be a jaxdiff export "
                         "(train one with configs/classifier_*.py)")
  model, params = load_diffusers_unet(resolved, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  meta = {"kind": "unet", "model": unet_config_dict(model.cfg), "source": {"diffusers": resolved},
          "diffusion": {"schedule": "linear", "num_timesteps": 1000}}
  return model, {"params": params}, meta


def model_digest(path):
  """Digest of a model folder's weights file (our export's params.safetensors or a diffusers folder's
  safetensors): what results computed with the model are fingerprinted with."""
  resolved = resolve_path(path)
  own = os.path.join(resolved, PARAMS_FILE)
  return file_digest(own if os.path.isfile(own) else find_weights(resolved))
