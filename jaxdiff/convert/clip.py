"""CLIP image-tower weights into jaxdiff, safely: a transformers ``CLIPModel`` / ``CLIPVisionModelWithProjection``
safetensors file (``vision_model.*``, ``visual_projection.weight``) or an OpenAI / open_clip state dict
(``visual.*``: safetensors, or a .pt read only with torch's weights-only loader; a file that would run code is
refused). The user supplies the file or a reference to it (e.g. hf:openai/clip-vit-base-patch32: its
model.safetensors). The architecture is read from the tensors' shapes; heads = width / 64 (every released CLIP)."""
from __future__ import annotations

import os
import re

import numpy as np

from jaxdiff.convert.files import TORCH_SUFFIXES, check_finite, read_safetensors, torch_state_dict, unflatten_params
from jaxdiff.errors import MissingFileError, ModelFileError
from jaxdiff.models.clip import CLIPVisionConfig

_OPENAI = [(r"^visual\.conv1\.weight$", "embeddings.patch_embedding.weight"),
           (r"^visual\.class_embedding$", "embeddings.class_embedding"),
           (r"^visual\.positional_embedding$", "embeddings.position_embedding.weight"),
           (r"^visual\.ln_pre\.", "pre_layrnorm."), (r"^visual\.ln_post\.", "post_layernorm."),
           (r"^visual\.transformer\.resblocks\.(\d+)\.ln_1\.", r"encoder.layers.\1.layer_norm1."),
           (r"^visual\.transformer\.resblocks\.(\d+)\.ln_2\.", r"encoder.layers.\1.layer_norm2."),
           (r"^visual\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"encoder.layers.\1.self_attn.out_proj."),
           (r"^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"encoder.layers.\1.mlp.fc1."),
           (r"^visual\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"encoder.layers.\1.mlp.fc2.")]


def _vision_tensors(state):
  """{transformers name without 'vision_model.': array} of the image tower; OpenAI names translated."""
  out = {}
  for key, w in state.items():
    w = np.asarray(w, np.float32)
    if key.startswith("vision_model."):
      out[key[len("vision_model."):]] = w
    elif key == "visual_projection.weight":
      out["projection"] = w
    elif key == "visual.proj":
      out["projection"] = w.T  # OpenAI: x @ proj
    elif m := re.match(r"^visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", key):
      for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(w, 3, axis=0)):
        out[f"encoder.layers.{m[1]}.self_attn.{name}.{m[2]}"] = part
    elif key.startswith("visual."):
      for pattern, repl in _OPENAI:
        if re.match(pattern, key):
          out[re.sub(pattern, repl, key)] = w
          break
      else:
        raise ModelFileError(f"unexpected tensor {key!r} in the CLIP checkpoint")
  return out


def clip_from_state_dict(state):
  """(CLIPVisionConfig, params) from a transformers or OpenAI CLIP state dict (numpy arrays)."""
  t = _vision_tensors(state)
  need = ("embeddings.patch_embedding.weight", "embeddings.class_embedding", "embeddings.position_embedding.weight",
          "projection")
  if any(k not in t for k in need):
    raise ModelFileError(f"not a CLIP image tower: missing {[k for k in need if k not in t]}")
  conv = t["embeddings.patch_embedding.weight"]
  width, patch = conv.shape[0], conv.shape[-1]
  layers = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("encoder.layers."))
  grid = int(round((t["embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5))
  cfg = CLIPVisionConfig(image_size=grid * patch, patch_size=patch, width=width, layers=layers, heads=max(1, width // 64),
                         mlp_dim=t["encoder.layers.0.mlp.fc1.weight"].shape[0], embed_dim=t["projection"].shape[0])
  flat = {"patch_embedding/kernel": conv.transpose(2, 3, 1, 0), "class_embedding": t["embeddings.class_embedding"],
          "position_embedding": t["embeddings.position_embedding.weight"],
          "visual_projection/kernel": t["projection"].T}
  for src, dst in (("pre_layrnorm", "pre_layrnorm"), ("post_layernorm", "post_layernorm")):
    flat[f"{dst}/scale"], flat[f"{dst}/bias"] = t[f"{src}.weight"], t[f"{src}.bias"]
  for i in range(layers):
    p = f"encoder.layers.{i}."
    for src, dst in (("layer_norm1", "layer_norm1"), ("layer_norm2", "layer_norm2")):
      flat[f"layers_{i}/{dst}/scale"], flat[f"layers_{i}/{dst}/bias"] = t[p + src + ".weight"], t[p + src + ".bias"]
    for src, dst in (("self_attn.q_proj", "q_proj"), ("self_attn.k_proj", "k_proj"), ("self_attn.v_proj", "v_proj"),
                     ("self_attn.out_proj", "out_proj"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
      flat[f"layers_{i}/{dst}/kernel"], flat[f"layers_{i}/{dst}/bias"] = t[p + src + ".weight"].T, t[p + src + ".bias"]
  check_finite(flat, "the CLIP checkpoint")
  return cfg, unflatten_params(flat)


def load_clip_vision(path):
  """(CLIPVisionConfig, params) from a CLIP weights file (see the module doc) or a folder holding one."""
  if os.path.isdir(path):
    names = [n for n in sorted(os.listdir(path)) if n.endswith((".safetensors",) + TORCH_SUFFIXES)]
    if not names:
      raise MissingFileError(f"no CLIP weights (.safetensors or .pt) in {path!r}")
    path = os.path.join(path, names[0])
  if not os.path.isfile(path):
    raise MissingFileError(f"no CLIP weights at {path!r}: put a transformers CLIP model.safetensors or an OpenAI / "
                           "open_clip ViT-B-32 file there, or name it by an hf: / url: reference")
  state = torch_state_dict(path) if path.endswith(TORCH_SUFFIXES) else read_safetensors(path)
  return clip_from_state_dict(state)
