"""OpenAI improved/guided-diffusion checkpoints (.pt state dicts) → the ADM U-Net (``models.adm``).

The .pt file is a pickle: it is read only with torch's ``weights_only=True`` loader (plain tensors; a file that
would run code is refused). ``convert_openai_unet`` writes the converted weights once as safetensors, which
``load_openai_unet`` then reads without torch.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.convert.files import (check_against_template, flatten_params, read_safetensors, torch_state_dict,
                                   unflatten_params)
from jaxdiff.convert.export import export_model
from jaxdiff.errors import ModelFileError
from jaxdiff.io import atomic_write
from jaxdiff.models.adm import ADMUNet, create_model_config


def params_from_openai_state(state: dict, template) -> dict:
  """Maps an OpenAI ``UNetModel`` state dict (numpy) onto ``template`` (the ADM param shapes); every tensor must
  match. Conv2d [O, I, kh, kw] → HWIO; the attention's 1×1 Conv1d and Linear → Dense kernels [I, O]; GroupNorm
  weight → scale; the label embedding as is."""
  flat = {}
  for key, w in state.items():
    *mods, leaf = key.split(".")
    name, w = "_".join(mods), np.asarray(w, np.float32)
    if name == "label_emb":
      leaf = "embedding"
    elif leaf == "weight":
      w = {4: lambda a: a.transpose(2, 3, 1, 0), 3: lambda a: a[:, :, 0].T, 2: lambda a: a.T,
           1: lambda a: a}[w.ndim](w)
      leaf = "scale" if w.ndim == 1 else "kernel"
    elif leaf != "bias":
      raise ModelFileError(f"unexpected tensor {key!r} in the checkpoint")
    flat[f"{name}/{leaf}"] = w
  check_against_template(flat, template, "the create_model arguments")
  return jax.tree_util.tree_map(jnp.asarray, unflatten_params(flat))


def param_template(model, cfg):
  """Shapes of the ADM parameters ``model`` (config ``cfg``) has: what a checkpoint must match."""
  x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels))
  y = None if cfg.num_classes is None else jnp.zeros((1,), jnp.int32)
  return jax.eval_shape(model.init, jax.random.key(0), x, jnp.zeros((1,), jnp.int32), y)["params"]


def load_openai_unet(path, **create_model_kwargs):
  """``(model, params)`` of an improved/guided-diffusion U-Net. ``path``: the OpenAI .pt state dict (weights-only
  load) or its converted safetensors; keyword arguments: those of the OpenAI code's ``create_model`` (image_size,
  num_channels, num_res_blocks, channel_mult, learn_sigma, attention_resolutions, num_heads, num_head_channels,
  use_scale_shift_norm, resblock_updown, use_new_attention_order, dropout, class_cond; ``dtype`` for bf16).
  ``model.apply({'params': params}, x, t[, y])``: x NHWC model space, integer t [B]; 2C channels when learn_sigma
  (ε first)."""
  cfg = create_model_config(**create_model_kwargs)
  model = ADMUNet(cfg)
  path = str(path)
  state = read_safetensors(path) if path.endswith(".safetensors") else None
  if state is not None and not any("." in k for k in state):  # already converted: our flat 'a/b' layout
    check_against_template(state, param_template(model, cfg), "the create_model arguments")
    return model, jax.tree_util.tree_map(jnp.asarray, unflatten_params(state))
  return model, params_from_openai_state(state if state is not None else torch_state_dict(path),
                                         param_template(model, cfg))


def convert_openai_unet(pt_path, out_path, **create_model_kwargs):
  """Converts an OpenAI .pt checkpoint once to jaxdiff safetensors (read later by ``load_openai_unet``)."""
  from safetensors.numpy import save
  _, params = load_openai_unet(pt_path, **create_model_kwargs)
  atomic_write(out_path, save({k: np.ascontiguousarray(v) for k, v in flatten_params(params).items()}))
  return out_path


def export_openai_unet(path, out_dir, **create_model_kwargs):
  """Converts an OpenAI checkpoint (.pt or its safetensors) into a jaxdiff U-Net export (model name 'adm'), so
  that ``config.purify.denoiser=out_dir`` purifies / denoises with it (the ε half of a learned-σ output)."""
  _, params = load_openai_unet(path, **create_model_kwargs)
  model_cfg = {"name": "adm", "in_channels": 3, "dtype": "float32", **create_model_kwargs}
  export_model(out_dir, "unet", model_cfg, {"params": params}, {"source": os.path.basename(str(path))})
  return out_dir


def export_public_checkpoint(path):
  """An OpenAI .pt checkpoint named like a public preset (``models.adm.PUBLIC_CHECKPOINTS``: cifar10_uncond_50M_500K.pt,
  256x256_diffusion_uncond.pt, ...) → its export folder beside the file (export-<sha256 prefix>/), converted once;
  None for any other file."""
  from jaxdiff.fingerprints import file_digest
  from jaxdiff.models.adm import PUBLIC_CHECKPOINTS
  stem, ext = os.path.splitext(os.path.basename(str(path)))
  if ext not in (".pt", ".pth") or stem not in PUBLIC_CHECKPOINTS:
    return None
  out = os.path.join(os.path.dirname(str(path)), f"export-{file_digest(path)}")
  if not os.path.isfile(os.path.join(out, "meta.json")):
    export_openai_unet(path, out, **PUBLIC_CHECKPOINTS[stem])
  return out
