"""Fingerprints of the settings that determine a result, and the one check that keeps a rerun from mixing
results made under other settings (checkpoints, certification TSVs, triggers, reports).

A fingerprint is a JSON-able nested dict (config blocks, seeds, digests of model files). ``check_or_record``
keeps it in a sidecar JSON file next to the result: a first run records it, a rerun under the same
fingerprint resumes, a rerun under another one is refused with the differing fields named.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os

from jaxdiff.errors import IncompatibleResultsError
from jaxdiff.io import atomic_write

OVERWRITE_HINT = "use a new --workdir, or --config.overwrite=True to replace them"


def canonical(obj):
  """The JSON view of ``obj`` (tuples → lists, numpy scalars → numbers, ConfigDicts → dicts)."""
  if hasattr(obj, "to_dict"):
    obj = obj.to_dict()
  return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def differences(old, new, prefix=""):
  """'path: <old> in the workdir, <new> now' for every leaf where two fingerprints differ."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new)):
      out += differences(old.get(k, "(unset)"), new.get(k, "(unset)"), f"{prefix}{k}.")
    return out
  if old != new:
    return [f"{prefix[:-1]}: {json.dumps(old)} in the workdir, {json.dumps(new)} now"]
  return []


def check_or_record(sidecar, fingerprint, *, what, overwrite=False):
  """Records ``fingerprint`` in ``sidecar`` (first run), or compares it with the recorded one.

  Returns True when earlier results may be reused. On a mismatch: raises ``IncompatibleResultsError``
  naming the differing fields, or with ``overwrite`` records the new fingerprint and returns False (the
  caller discards its old results).
  """
  fp = canonical(fingerprint)
  if os.path.exists(sidecar):
    with open(sidecar) as f:
      old = json.load(f)
    if old == fp:
      return True
    if not overwrite:
      diff = differences(old, fp)
      raise IncompatibleResultsError(f"{what} in {os.path.dirname(sidecar) or '.'} were made under other settings "
                                     f"({'; '.join(diff[:4])}{' …' if len(diff) > 4 else ''}): {OVERWRITE_HINT}")
  atomic_write(sidecar, json.dumps(fp, indent=1, sort_keys=True) + "\n")
  return False


def file_digest(path):
  """sha256 (first 16 hex digits) of a file's bytes; cached while its size and mtime stay the same."""
  st = os.stat(path)
  return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path, size, mtime_ns):
  del size, mtime_ns  # part of the cache key only
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()[:16]
