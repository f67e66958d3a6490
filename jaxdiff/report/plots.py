"""Line plots (PNG, written atomically): sweep panels (one per metric, one curve per model) and certified
accuracy against radius."""
from __future__ import annotations

import io

import numpy as np

from jaxdiff.io import atomic_write
from jaxdiff.metrics import certified_accuracy


def plot_panels(x, panels: dict, out_png, xlabel, ylim=(-0.02, 1.02), xscale="linear"):
  """``panels`` maps a panel title to {curve label: [y per x]}; e.g. {"ASR": {"φ": [...], "φ*": [...]}};
  ``xscale`` "log" for rates spanning decades."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), dpi=120, squeeze=False)
  for ax, (title, curves) in zip(axes[0], panels.items()):
    for label, ys in curves.items():
      ax.plot(x, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_xscale(xscale)
    if ylim is not None:
      ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend()
  save_figure(fig, out_png)


def plot_bars(categories, series: dict, out_png, xlabel="", ylabel=""):
  """Grouped bars: one group per category, one bar per series ({label: [value per category]})."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(categories) * max(1, len(series)) / 2), 3.2), dpi=120)
  width = 0.8 / max(1, len(series))
  xs = np.arange(len(categories))
  for i, (label, values) in enumerate(series.items()):
    ax.bar(xs + (i - (len(series) - 1) / 2) * width, values, width, label=label)
  ax.set_xticks(xs, [str(c) for c in categories])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, axis="y")
  if len(series) > 1:
    ax.legend(fontsize=7)
  save_figure(fig, out_png)


def plot_strips(groups: dict, out_png, ylabel="", hline=None, title=""):
  """One column of points per item, columns grouped and coloured by group: ``groups`` {group: {item: [values]}}
  (e.g. {"benign": {"phi": [2.2, 2.3]}}); ``hline`` draws a dashed threshold."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  n = sum(len(items) for items in groups.values())
  fig, ax = plt.subplots(figsize=(max(4.0, 0.28 * n + 1.5), 3.2), dpi=120)
  x, ticks = 0, []
  for g, (group, items) in enumerate(groups.items()):
    color = f"C{g}"
    for j, (item, values) in enumerate(items.items()):
      ax.scatter(np.full(len(values), x), values, s=12, color=color, label=group if j == 0 else None)
      ticks.append((x, item))
      x += 1
    x += 1
  if hline is not None:
    ax.axhline(hline, color="k", ls="--", lw=1, label=f"threshold {hline:.2f}")
  ax.set_xticks([t for t, _ in ticks], [name for _, name in ticks], rotation=90, fontsize=6)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=7)
  save_figure(fig, out_png)


def plot_certified(curves: dict, out_png, max_radius=None):
  """Certified accuracy against radius, one curve per result (e.g. clean vs trigger, benign vs backdoored);
  ``curves`` maps a label to rows with ``correct`` and ``radius`` (``jaxdiff.robust.read_tsv``)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  top = max_radius or max([np.max(r["radius"], initial=0) for r in curves.values()] + [0.5]) * 1.05
  rs = np.linspace(0, top, 200)
  for name, rows in curves.items():
    ax.plot(rs, certified_accuracy(rows, rs), label=name)
  ax.set_xlabel("ℓ2 radius (pixel space)")
  ax.set_ylabel("certified accuracy")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend()
  save_figure(fig, out_png)


def save_figure(fig, out_png):
  """Writes a matplotlib figure as PNG atomically and closes it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  atomic_write(out_png, buf.getvalue())
