"""Reading tensors safely: safetensors only, every file checked (readable, finite) and named in errors."""
from __future__ import annotations

import jax
import numpy as np

from jaxdiff.errors import ModelFileError, NonFiniteError


def flatten_params(tree, leaf=np.asarray) -> dict:
  """{'a/b/c': leaf(array)} for a nested parameter tree (the key layout of our safetensors files)."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten_params(flat: dict) -> dict:
  """{"a/b/c": array} (the safetensors layout of exports) → the nested parameter tree; ``flatten_params`` inverts it."""
  out = {}
  for key, v in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def check_against_template(flat: dict, template, what: str):
  """Raises ``ModelFileError`` unless ``flat`` ({'a/b': array}) holds exactly the tensors of the parameter tree
  ``template`` (arrays or ShapeDtypeStructs) with the same shapes; ``what`` names what they must match."""
  want = flatten_params(template, lambda v: tuple(v.shape))
  missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
  if missing or extra:
    raise ModelFileError(f"checkpoint does not match {what}: missing {missing[:5]}, unexpected {extra[:5]}")
  for k, shape in want.items():
    if tuple(flat[k].shape) != shape:
      raise ModelFileError(f"shape mismatch at {k}: checkpoint {tuple(flat[k].shape)}, model {shape}")


def check_finite(flat: dict, where: str):
  """Raises ``NonFiniteError`` naming ``where`` and the first tensor holding NaN or Inf."""
  for k, v in flat.items():
    if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.isfinite(v)):
      bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
      raise NonFiniteError(f"{where}: tensor {k!r} holds {bad} non-finite value(s) (NaN/Inf); "
                           "these weights cannot be used")


def read_safetensors(path) -> dict:
  """Tensors of a safetensors file as numpy arrays; a truncated or corrupt file raises ``ModelFileError``."""
  from safetensors.numpy import load_file  # plain tensors; never executes code
  try:
    flat = load_file(path)
  except Exception as e:  # SafetensorError (truncated/corrupt header), OSError
    raise ModelFileError(f"{path} is not a readable safetensors file ({e}); re-export or re-download it") from e
  check_finite(flat, str(path))
  return flat


TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")  # pickled torch files: weights-only loader only


def torch_state_dict(path) -> dict:
  """A torch .pt/.pth state dict as numpy arrays, read with torch's weights-only unpickler (plain tensors; a pickle
  that would run code is refused with ``ModelFileError``). Every tensor is checked finite."""
  import torch  # only to read the user's file
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
    flat = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
  except Exception as e:  # UnpicklingError for a file that would run code, or a corrupt file
    raise ModelFileError(f"refusing {path}: torch's weights-only loader could not read it as plain tensors "
                         f"({e})") from e
  check_finite(flat, str(path))
  return flat
