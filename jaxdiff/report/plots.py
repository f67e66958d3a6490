"""Line plots (PNG, written atomically) for sweeps: one panel per metric, one curve per model."""
from __future__ import annotations

import io

from jaxdiff.io import atomic_write


def plot_panels(x, panels: dict, out_png, xlabel, ylim=(-0.02, 1.02)):
  """``panels`` maps a panel title to {curve label: [y per x]}; e.g. {"ASR": {"φ": [...], "φ*": [...]}}."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), dpi=120, squeeze=False)
  for ax, (title, curves) in zip(axes[0], panels.items()):
    for label, ys in curves.items():
      ax.plot(x, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylim(*ylim)
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
