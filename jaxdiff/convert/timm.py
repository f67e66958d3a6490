"""timm Vision Transformer weights into jaxdiff, safely: a timm / Hugging Face ``model.safetensors`` of a
``VisionTransformer`` (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``, ``head.*``), or a .pt state dict read only with torch's weights-only loader.
The architecture is read from the tensors' shapes (heads = width / 64, as in every released ViT-Ti/S/B/L); the
result is ``models.vit.TimmViT`` under the registry name ``vit_{tiny,small,base}_patch16_224``. Nothing is
downloaded: the user supplies the file (e.g. Carlini et al.'s CIFAR-10 fine-tuned ViT-B/16)."""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from jaxdiff.convert.export import export_model
from jaxdiff.convert.files import (TORCH_SUFFIXES, check_against_template, check_finite, flatten_params,
                                   read_safetensors, torch_state_dict, unflatten_params)
from jaxdiff.errors import MissingFileError, ModelFileError
from jaxdiff.models import build_model, init_variables

_NAMES = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224"}


def timm_vit_config(state, image_size=32, in_channels=3) -> ml_collections.ConfigDict:
  """The ``config.model`` block of the TimmViT a timm state dict (numpy arrays) holds; ``image_size``: the
  images it will be given (resized inside to the checkpoint's own resolution)."""
  need = ("cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight", "blocks.0.mlp.fc1.weight")
  if any(k not in state for k in need):
    raise ModelFileError(f"not a timm VisionTransformer state dict: missing {[k for k in need if k not in state]}")
  dim, _, patch, _ = state["patch_embed.proj.weight"].shape
  grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
  depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
  return ml_collections.ConfigDict(dict(
      name=_NAMES.get(dim, "vit_base_patch16_224"), image_size=image_size, in_channels=in_channels,
      num_classes=int(state["head.weight"].shape[0]), resolution=grid * patch, patch=int(patch), dim=int(dim),
      depth=depth, heads=max(1, dim // 64), mlp_dim=int(state["blocks.0.mlp.fc1.weight"].shape[0]), dtype="float32"))


def params_from_timm_state(state) -> dict:
  """TimmViT params from a timm state dict (numpy): Linear (out, in) → Dense (in, out), Conv OIHW → HWIO."""
  t = {k: np.asarray(v, np.float32) for k, v in state.items()}
  flat = {"cls_token": t.pop("cls_token"), "pos_embed": t.pop("pos_embed"),
          "patch_embed/kernel": t.pop("patch_embed.proj.weight").transpose(2, 3, 1, 0),
          "patch_embed/bias": t.pop("patch_embed.proj.bias")}
  for key, w in t.items():
    parts = key.split(".")
    if parts[0] == "blocks":  # blocks.N.{norm1|norm2|attn.qkv|attn.proj|mlp.fc1|mlp.fc2}.{weight|bias}
      layer, leaf = parts[-2], parts[-1]
      prefix = f"blocks_{parts[1]}/{layer}"
    elif parts[0] in ("norm", "head") and len(parts) == 2:
      layer, leaf, prefix = parts[0], parts[1], parts[0]
    else:
      raise ModelFileError(f"unexpected tensor {key!r} in the timm ViT checkpoint (only the plain "
                           "VisionTransformer with a class token and a linear head is supported)")
    if layer.startswith("norm"):
      flat[f"{prefix}/{'scale' if leaf == 'weight' else 'bias'}"] = w
    else:
      flat[f"{prefix}/{'kernel' if leaf == 'weight' else 'bias'}"] = w.T if leaf == "weight" else w
  check_finite(flat, "the timm ViT checkpoint")
  return unflatten_params(flat)


def _read(path):
  if not os.path.isfile(path):
    raise MissingFileError(f"no ViT weights at {path!r}: put a timm / Hugging Face model.safetensors (or a "
                           "state-dict .pt) there, or name it by an hf: / url: reference")
  return torch_state_dict(path) if path.endswith(TORCH_SUFFIXES) else read_safetensors(path)


def load_timm_vit(path, image_size=32, in_channels=3, **overrides):
  """``(model, variables, model_cfg)`` of a timm ViT checkpoint (see the module doc); ``overrides`` set config
  fields the tensors do not fix (``dtype``, ``resize``, ``mean``, ``std``, ``heads``). The tensors must be exactly
  those the config builds."""
  state = _read(os.fspath(path))
  cfg = timm_vit_config(state, image_size, in_channels)
  cfg.update(overrides)
  model = build_model(cfg)
  params = params_from_timm_state(state)
  template = jax.eval_shape(lambda k: init_variables(model, cfg, k), jax.random.key(0))["params"]
  check_against_template(flatten_params(params), template, f"the timm ViT checkpoint {path!r}")
  return model, {"params": params}, cfg


def convert_timm_vit(path, out_dir, image_size=32, in_channels=3, **overrides):
  """Converts a timm ViT checkpoint once into a jaxdiff classifier export (``config.classifier.path``)."""
  _, variables, cfg = load_timm_vit(path, image_size, in_channels, **overrides)
  export_model(out_dir, "classifier", cfg, variables, {"source": os.path.basename(os.fspath(path))})
  return out_dir
