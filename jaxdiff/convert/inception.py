"""pytorch-fid's Inception-v3 weights (``pt_inception-2015-12-05-6726825d.pth``) into jaxdiff, safely.

The .pth file is a pickle: it is read only with torch's ``weights_only=True`` loader (plain tensors; a file
that would run code is refused), converted once to safetensors (flat ``params/...`` and ``batch_stats/...``
keys), and every later run reads the safetensors. The user supplies the file (or a url: reference to it).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.convert.files import (TORCH_SUFFIXES, check_finite, flatten_params, read_safetensors,
                                   torch_state_dict, unflatten_params)
from jaxdiff.errors import MissingFileError, ModelFileError
from jaxdiff.io import atomic_write
from jaxdiff.models.inception import FIDInceptionV3


def inception_variables_from_torch(state: dict) -> dict:
  """{'params', 'batch_stats'} of ``FIDInceptionV3`` from a pytorch-fid state dict (numpy arrays); the
  classifier head (fc) is dropped. Every tensor the network needs must be present with its shape."""
  params, stats = {}, {}
  for key, w in state.items():
    *mods, leaf = key.split(".")
    if mods and mods[0] == "fc" or leaf == "num_batches_tracked":
      continue
    w = np.asarray(w, np.float32)
    if leaf == "weight" and w.ndim == 4:
      tree, leaf, w = params, "kernel", w.transpose(2, 3, 1, 0)
    elif leaf in ("weight", "bias"):
      tree, leaf = params, "scale" if leaf == "weight" else "bias"
    elif leaf in ("running_mean", "running_var"):
      tree, leaf = stats, "mean" if leaf == "running_mean" else "var"
    else:
      raise ModelFileError(f"unexpected tensor {key!r} in the Inception-v3 checkpoint")
    node = tree
    for m in mods:
      node = node.setdefault(m, {})
    node[leaf] = w
  want = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))
  got = {"params": params, "batch_stats": stats}
  shape = lambda v: tuple(v.shape)
  want_s, got_s = flatten_params(want, shape), flatten_params(got, shape)
  if want_s != got_s:
    missing = sorted(set(want_s) - set(got_s))[:3]
    wrong = sorted(k for k in set(want_s) & set(got_s) if want_s[k] != got_s[k])[:3]
    raise ModelFileError(f"not pytorch-fid's Inception-v3: missing {missing}, wrong shapes {wrong}")
  return got


def convert_inception(pt_path, out_path):
  """Converts pytorch-fid's .pth (weights-only load) to a jaxdiff safetensors file; returns ``out_path``."""
  from safetensors.numpy import save
  flat = flatten_params(inception_variables_from_torch(torch_state_dict(pt_path)))
  check_finite(flat, pt_path)
  atomic_write(out_path, save({k: np.ascontiguousarray(v) for k, v in flat.items()}))
  return out_path


def load_inception_variables(path):
  """FIDInceptionV3 variables from a converted safetensors file, or from pytorch-fid's .pth (converted once,
  next to it, as ``<name>.safetensors``)."""
  if not os.path.isfile(path):
    raise MissingFileError(f"no Inception-v3 weights at {path!r}: put pytorch-fid's pt_inception-2015-12-05 file "
                           "there, or name it by an hf: / url: reference")
  if path.endswith(TORCH_SUFFIXES):
    converted = os.path.splitext(path)[0] + ".safetensors"
    if not os.path.isfile(converted):
      convert_inception(path, converted)
    path = converted
  return jax.tree_util.tree_map(jnp.asarray, unflatten_params(read_safetensors(path)))


def load_inception_features(path, batch=200):
  """``fn(images [N, H, W, 3] pixel [0, 1]) -> pool3 features [N, 2048]`` (numpy), weights as arguments."""
  variables = load_inception_variables(path)
  apply = jax.jit(FIDInceptionV3().apply)

  def features(images):
    images = np.asarray(images, np.float32)
    if images.shape[-1] == 1:  # grey images: the three channels Inception expects
      images = np.repeat(images, 3, -1)
    return np.concatenate([np.asarray(apply(variables, images[i:i + batch])) for i in range(0, len(images), batch)])
  return features
