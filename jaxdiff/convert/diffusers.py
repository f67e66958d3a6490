"""Import diffusers ``UNet2DModel`` checkpoints (config.json + safetensors) into ``jaxdiff.models.UNet``.

Threat model: the checkpoint may be malicious. Only safetensors (plain tensors, no code) is read;
pickle-based ``.bin``/``.pt``/``.ckpt`` files are refused with instructions to convert them.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.convert.files import check_against_template, read_safetensors
from jaxdiff.errors import MissingFileError, ModelFileError
from jaxdiff.models.unet import UNet, UNetConfig

SAFETENSORS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_LEGACY_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out_0"}
_REFUSE = (
    "refusing to read {path}: it is a pickle file, and unpickling a downloaded model can run arbitrary "
    "code. Convert it to safetensors in a sandbox you trust, with torch's weights-only loader:\n"
    "  python -c \"import torch, safetensors.torch as st; "
    "st.save_file(torch.load('{path}', weights_only=True, map_location='cpu'), "
    "'{dir}/" + SAFETENSORS_NAME + "')\"\n"
    "or fetch the repository's .safetensors file, then pass the folder again.")


def config_from_diffusers(cfg: dict, dtype=jnp.float32) -> UNetConfig:
  """Maps a diffusers UNet2DModel ``config.json`` to a ``UNetConfig``; rejects unsupported features."""
  def want(key, ok, default):
    val = cfg.get(key, default)
    if val not in ok:
      raise ModelFileError(f"diffusers config {key}={val!r} is not supported (supported: {ok})")
    return val
  want("_class_name", ("UNet2DModel",), "UNet2DModel")
  want("time_embedding_type", ("positional",), "positional")
  want("act_fn", ("silu", "swish"), "silu")
  want("class_embed_type", (None,), None)
  want("num_class_embeds", (None,), None)
  want("center_input_sample", (False,), False)
  want("resnet_time_scale_shift", ("default",), "default")
  want("downsample_type", ("conv",), "conv")
  want("upsample_type", ("conv",), "conv")
  want("attn_norm_num_groups", (None, cfg.get("norm_num_groups", 32)), None)
  attn = {"DownBlock2D": False, "AttnDownBlock2D": True, "UpBlock2D": False, "AttnUpBlock2D": True}
  for b in list(cfg["down_block_types"]) + list(cfg["up_block_types"]):
    if b not in attn:
      raise ModelFileError(f"block type {b!r} is not supported (supported: {sorted(attn)})")
  return UNetConfig(
      in_channels=cfg.get("in_channels", 3), out_channels=cfg.get("out_channels", 3),
      block_out_channels=tuple(cfg["block_out_channels"]),
      down_attention=tuple(attn[b] for b in cfg["down_block_types"]),
      up_attention=tuple(attn[b] for b in cfg["up_block_types"]),
      layers_per_block=cfg.get("layers_per_block", 2), norm_num_groups=cfg.get("norm_num_groups", 32),
      norm_eps=cfg.get("norm_eps", 1e-5), dropout=cfg.get("dropout", 0.0),
      attention_head_dim=cfg.get("attention_head_dim"), mid_attention=cfg.get("add_attention", True),
      mid_block_scale_factor=cfg.get("mid_block_scale_factor", 1.0),
      downsample_padding=cfg.get("downsample_padding", 1), flip_sin_to_cos=cfg.get("flip_sin_to_cos", True),
      freq_shift=cfg.get("freq_shift", 0), sample_size=cfg.get("sample_size", 32) or 32, dtype=dtype)


def diffusers_config(cfg: UNetConfig) -> dict:
  """The diffusers ``UNet2DModel`` keyword arguments of a ``UNetConfig`` (the inverse of
  ``config_from_diffusers``): a torch peer with the same architecture, whose state dict ``convert_state_dict``
  maps onto jaxdiff's parameters."""
  return dict(
      sample_size=cfg.sample_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
      layers_per_block=cfg.layers_per_block, block_out_channels=tuple(cfg.block_out_channels),
      down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.down_attention),
      up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in cfg.up_attention),
      norm_num_groups=cfg.norm_num_groups, norm_eps=cfg.norm_eps, dropout=cfg.dropout,
      attention_head_dim=cfg.attention_head_dim, add_attention=cfg.mid_attention,
      mid_block_scale_factor=cfg.mid_block_scale_factor, downsample_padding=cfg.downsample_padding,
      flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift)


def flax_path(key: str):
  """'down_blocks.0.resnets.1.conv1.weight' → ('down_blocks_0_resnets_1', 'conv1', 'kernel'-ish)."""
  *mods, leaf = key.replace("to_out.0", "to_out_0").split(".")
  mods[-1] = _LEGACY_ATTN.get(mods[-1], mods[-1])
  if len(mods) == 1 or mods[0] == "time_embedding":
    return ("_".join(mods),), leaf
  return ("_".join(mods[:-1]), mods[-1]), leaf


def convert_state_dict(state: dict, template) -> dict:
  """Maps torch tensors (numpy) onto the param tree ``template`` (shapes); every weight must match."""
  flat = {}
  for key, w in state.items():
    path, leaf = flax_path(key)
    w = np.asarray(w, np.float32)
    if leaf == "weight":
      if w.ndim == 4:
        w = w.transpose(2, 3, 1, 0)
        if path[-1] in ("to_q", "to_k", "to_v", "to_out_0"):
          w = w[0, 0]
      elif w.ndim == 2:
        w = w.T
      leaf = "scale" if w.ndim == 1 else "kernel"
    elif leaf != "bias":
      raise ModelFileError(f"unexpected tensor {key!r} in the checkpoint")
    flat[path + (leaf,)] = w
  check_against_template({"/".join(p): v for p, v in flat.items()}, template, "the config")
  params = {}
  for p, v in flat.items():
    node = params
    for k in p[:-1]:
      node = node.setdefault(k, {})
    node[p[-1]] = jnp.asarray(v)
  return params


def find_weights(path: str) -> str:
  """The safetensors file of a diffusers folder (or its unet/ subfolder); pickle files are refused."""
  if os.path.isfile(path):
    if path.endswith(PICKLE_SUFFIXES):
      raise ModelFileError(_REFUSE.format(path=path, dir=os.path.dirname(path) or "."))
    return path
  for sub in ("", "unet"):
    d = os.path.join(path, sub)
    st = os.path.join(d, SAFETENSORS_NAME)
    if os.path.isfile(st):
      return st
    for name in os.listdir(d) if os.path.isdir(d) else []:
      if name.endswith(PICKLE_SUFFIXES):
        raise ModelFileError(_REFUSE.format(path=os.path.join(d, name), dir=d))
  raise MissingFileError(
      f"no {SAFETENSORS_NAME} under {path!r}. Download the model folder (config.json + safetensors), e.g. "
      "`huggingface-cli download google/ddpm-cifar10-32 --local-dir DIR` on a machine with internet, "
      "and copy DIR here.")


def load_diffusers_unet(path: str, dtype=jnp.float32):
  """Reads a diffusers UNet2DModel folder (or its ``unet/`` subfolder) → ``(model, params)``.

  ``model.apply({'params': params}, x_nhwc, t)`` returns ε (NHWC, fp32) for model-space x and [B]
  timestep indices t, deterministic unless ``train=True`` is passed with a 'dropout' rng.
  """
  weights = find_weights(path)
  cfg_path = os.path.join(os.path.dirname(weights), "config.json")
  if not os.path.isfile(cfg_path):
    raise MissingFileError(f"no config.json beside {weights}")
  with open(cfg_path) as f:
    cfg = config_from_diffusers(json.load(f), dtype=dtype)
  model = UNet(cfg)
  x = jnp.zeros((1, cfg.sample_size, cfg.sample_size, cfg.in_channels))
  template = jax.eval_shape(model.init, jax.random.key(0), x, jnp.zeros((1,)))["params"]
  return model, convert_state_dict(read_safetensors(weights), template)
