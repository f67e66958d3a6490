"""Result records of certification: the CERTIFY TSV (``idx label predict radius correct time count``, the
reference tools' format plus the vote count), written one flushed row per image and resumed after a kill,
and ``certify_dataset``, the resumable loop that fills it."""
from __future__ import annotations

import csv
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.fingerprints import check_or_record
from jaxdiff.io import atomic_write, is_writer
from jaxdiff.parallel import barrier
from jaxdiff.progress import progress
from jaxdiff.robust.certify import certify

TSV_HEADER = ["idx", "label", "predict", "radius", "correct", "time", "count"]


def read_tsv(path):
  """Columns of a CERTIFY TSV as float arrays {idx, label, predict, radius, correct, time}."""
  with open(path) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  return {k: np.array([float(r[k]) for r in rows]) for k in TSV_HEADER[:6]}


class TsvWriter:
  """Appends rows and flushes each one; on reopen, drops a torn last line and reports finished idx.

  ``fingerprint``: the settings that determine the rows, kept in ``<path>.fingerprint.json``; reopening under
  another fingerprint is refused (``IncompatibleResultsError``) or, with ``overwrite``, starts the file over.
  """

  def __init__(self, path, fingerprint=None, overwrite=False):
    self.path = path
    if fingerprint is not None:
      reusable = check_or_record(path + ".fingerprint.json", fingerprint, what="certification results",
                                 overwrite=overwrite)
      if not reusable and os.path.exists(path) and is_writer():
        os.remove(path)
    barrier(f"tsv-open:{path}")  # every process sees the file as the writer left it
    done = set()
    if os.path.exists(path):
      with open(path, "rb") as f:
        data = f.read()
      if data and not data.endswith(b"\n"):  # killed mid-write: keep only whole lines
        data = data[:data.rfind(b"\n") + 1]
        atomic_write(path, data)
      lines = data.decode().splitlines()
      if lines and lines[0].split("\t")[:len(TSV_HEADER)] != TSV_HEADER:
        raise ValueError(f"{path} is not a CERTIFY TSV; move it away or pick another workdir")
      done = {int(l.split("\t")[0]) for l in lines[1:] if l}
    else:
      atomic_write(path, "\t".join(TSV_HEADER) + "\n")
    self.done = done
    self.f = open(path, "a") if is_writer() else None

  def write(self, idx, label, predict, radius, correct, seconds, count):
    self.done.add(int(idx))
    if self.f is None:  # not the writer process
      return
    self.f.write(f"{idx}\t{label}\t{predict}\t{radius:.6g}\t{correct}\t{seconds:.4f}\t{count}\n")
    self.f.flush()
    os.fsync(self.f.fileno())

  def close(self):
    if self.f is not None:
      self.f.close()


def certify_dataset(base, x, y, idx, tsv_path, *, key, sigma, num_classes, n0, n, alpha, batch_size, params=None,
                    fingerprint=None, overwrite=False, desc="certify"):
  """CERTIFY for every image whose ``idx`` is not yet in ``tsv_path``, one row each (resumable).

  Image i uses the key fold_in(key, idx[i]), so a resumed run redraws exactly the noise an uninterrupted
  one would. ``base``/``params``: see ``jaxdiff.robust.sample_counts``. ``fingerprint`` (what the rows depend
  on besides the image: N, σ, seed, models, ...) guards the file against rows made under other settings.
  """
  w = TsvWriter(tsv_path, fingerprint, overwrite)
  todo = [i for i in range(len(idx)) if int(idx[i]) not in w.done]
  bar = progress(total=len(idx), initial=len(idx) - len(todo), desc=desc, unit="img")
  for i in todo:
    t0 = time.time()
    pred, radius, count = certify(base, jnp.asarray(x[i:i + 1]), key=jax.random.fold_in(key, int(idx[i])),
                                  sigma=sigma, num_classes=num_classes, n0=n0, n=n, alpha=alpha,
                                  batch_size=batch_size, params=params)
    w.write(int(idx[i]), int(y[i]), int(pred[0]), float(radius[0]), int(pred[0] == y[i]), time.time() - t0,
            int(count[0]))
    bar.update(1)
  bar.close()
  w.close()
