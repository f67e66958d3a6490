"""Atomic files, parameter export (safetensors + JSON), and the metrics writer."""
from __future__ import annotations

import json
import os
import sys
import tempfile

import jax
import numpy as np


def atomic_write(path, data: bytes | str):
  """Writes ``data`` to ``path`` via a temporary file and rename: readers never see half a file."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
  with os.fdopen(fd, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json(path, obj):
  atomic_write(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def _jsonable(o):
  if isinstance(o, dict):
    return {str(k): _jsonable(v) for k, v in o.items()}
  if isinstance(o, (list, tuple)):
    return [_jsonable(v) for v in o]
  if isinstance(o, (np.ndarray, jax.Array)):
    return _jsonable(np.asarray(o).tolist())
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, (np.integer,)):
    return int(o)
  return o


def flatten_params(tree) -> dict:
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten_params(flat: dict) -> dict:
  out = {}
  for key, v in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def save_params(directory, params, meta: dict):
  """Exports a parameter tree as ``params.safetensors`` (no pickle) and ``meta.json``."""
  from safetensors.numpy import save
  flat = {k: np.ascontiguousarray(v, np.float32) for k, v in flatten_params(params).items()}
  atomic_write(os.path.join(directory, "params.safetensors"), save(flat))
  write_json(os.path.join(directory, "meta.json"), meta)


def load_params(directory):
  """Reads an export of ``save_params`` → (meta dict, params tree of jnp arrays)."""
  from safetensors.numpy import load_file
  import jax.numpy as jnp
  st, mj = os.path.join(directory, "params.safetensors"), os.path.join(directory, "meta.json")
  if not (os.path.isfile(st) and os.path.isfile(mj)):
    raise FileNotFoundError(f"{directory!r} is not a jaxdiff export (needs params.safetensors and meta.json)")
  with open(mj) as f:
    meta = json.load(f)
  return meta, jax.tree_util.tree_map(jnp.asarray, unflatten_params(load_file(st)))


def _tensorboard_writer(logdir):
  """A SummaryWriter when tensorboardX or torch's TensorBoard support is installed, else None."""
  for mod in ("tensorboardX", "torch.utils.tensorboard"):
    try:
      return __import__(mod, fromlist=["SummaryWriter"]).SummaryWriter(logdir)
    except Exception:  # not installed (torch's needs the tensorboard package)
      continue
  return None


class MetricWriter:
  """Metrics to the console, ``WORKDIR/metrics.jsonl`` (one JSON object per line, flushed) and
  TensorBoard (WORKDIR/tensorboard) when a SummaryWriter is installed."""

  def __init__(self, workdir, resume_step=None, console=True):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.console = console
    self.tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))
    if resume_step is not None and os.path.exists(self.path):  # drop lines a killed run wrote later
      with open(self.path) as f:
        keep = [l for l in f if l.strip() and json.loads(l).get("step", -1) <= resume_step]
      atomic_write(self.path, "".join(keep))

  def write(self, step, metrics: dict, prefix=""):
    row = {"step": int(step), **{prefix + k: _jsonable(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self.tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)):
          self.tb.add_scalar(k, v, int(step))
      self.tb.flush()
    if self.console:
      msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
      try:
        from tqdm import tqdm
        tqdm.write(msg, file=sys.stdout)
      except ImportError:
        print(msg, flush=True)
