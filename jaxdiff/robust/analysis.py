"""Certified-accuracy analysis of CERTIFY TSVs (``idx label predict radius correct time``)."""
from __future__ import annotations

import csv
import os

import numpy as np

from jaxdiff.io import atomic_write
from jaxdiff.report.plots import save_figure

TSV_HEADER = ["idx", "label", "predict", "radius", "correct", "time", "count"]


def read_tsv(path):
  with open(path) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  return {k: np.array([float(r[k]) for r in rows]) for k in TSV_HEADER[:6]}


def certified_accuracy(path, radii):
  """Fraction of rows that are correct with radius ≥ r, for each r (an abstention is never correct)."""
  d = read_tsv(path)
  return [float(np.mean((d["correct"] == 1) & (d["radius"] >= r))) if len(d["idx"]) else 0.0 for r in radii]


def certified_table(paths: dict, radii):
  from jaxdiff.report import markdown_table
  rows = [[name] + certified_accuracy(p, radii) for name, p in paths.items()]
  return markdown_table(["run"] + [f"r = {r:g}" for r in radii], rows)


def plot_certified(paths: dict, out_png, max_radius=None):
  """Certified accuracy against radius, one curve per TSV (e.g. clean vs trigger, benign vs backdoored)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  top = max_radius or max([read_tsv(p)["radius"].max(initial=0) for p in paths.values()] + [0.5]) * 1.05
  rs = np.linspace(0, top, 200)
  for name, p in paths.items():
    ax.plot(rs, certified_accuracy(p, rs), label=name)
  ax.set_xlabel("ℓ2 radius (pixel space)")
  ax.set_ylabel("certified accuracy")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend()
  save_figure(fig, out_png)


class TsvWriter:
  """Appends rows and flushes each one; on reopen, drops a torn last line and reports finished idx."""

  def __init__(self, path):
    self.path = path
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
    self.f = open(path, "a")

  def write(self, idx, label, predict, radius, correct, seconds, count):
    self.f.write(f"{idx}\t{label}\t{predict}\t{radius:.6g}\t{correct}\t{seconds:.4f}\t{count}\n")
    self.f.flush()
    os.fsync(self.f.fileno())
    self.done.add(int(idx))

  def close(self):
    self.f.close()
