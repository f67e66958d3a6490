"""Atomic files, JSON, and the metrics writer (console, metrics.jsonl, TensorBoard).

One writer per multi-process run: every file jaxdiff writes goes through ``atomic_write`` or an append
guarded by ``is_writer()``, so only process 0 writes (metrics, reports, TSVs, grids, exports, triggers);
the other processes compute the same results and write nothing. Orbax writes checkpoints for all of them.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import jax
import numpy as np


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process umask, to give atomically written files the usual permissions


def offline():
  """True when downloads are switched off: HF_HUB_OFFLINE or JAXDIFF_OFFLINE set to 1 / true / yes / on."""
  return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "JAXDIFF_OFFLINE"))


def is_writer():
  """True on the one process that writes files: process 0 (the only one in a single-process run)."""
  return jax.process_index() == 0


def atomic_write(path, data: bytes | str):
  """Writes ``data`` to ``path`` via a temporary file and rename: readers never see half a file. A no-op on
  processes other than the writer."""
  if not is_writer():
    return
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
  with os.fdopen(fd, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
    f.flush()
    os.fsync(f.fileno())
  os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600: give the file the permissions open() would
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
  TensorBoard (WORKDIR/tensorboard) when a SummaryWriter is installed. Silent on processes other than the
  writer (each line once in a multi-process run)."""

  def __init__(self, workdir, resume_step=None, console=True):
    self.active = is_writer()
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.console = console
    self.tb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))
    if resume_step is not None and os.path.exists(self.path):  # drop lines a killed run wrote later
      with open(self.path) as f:
        keep = [l for l in f if l.strip() and json.loads(l).get("step", -1) <= resume_step]
      atomic_write(self.path, "".join(keep))

  def write(self, step, metrics: dict, prefix=""):
    if not self.active:
      return
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
