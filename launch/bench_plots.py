"""Draws the committed benchmark JSONs (docs/bench/*.json) as the pictures a reader wants, for one device:

  python launch/bench_plots.py --device="NVIDIA H200" --out=docs/images

``bench_unet.png``: images/s and fraction of peak (the dtype's) against batch size for the CIFAR-10 U-Net's forward and
train step, per dtype, jaxdiff beside its PyTorch peer (eager; compiled where a row has one). ``bench_certify.png``:
certification draws/s against batch per dtype and pipeline, beside the peer's loop. Each JSON is one batch size: the
lines fill in as `scripts/device_bench.sh` adds batch sizes (one point each today).
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("bench_dir", "docs/bench", "Folder of the benchmark JSONs.")
flags.DEFINE_string("device", "NVIDIA H200", "The device whose rows are drawn (the JSONs' `device`).")
flags.DEFINE_string("out", "docs/images", "Folder of the PNGs.")


def load(bench_dir, device, suite):
  """The JSONs of one suite and device → [(batch, dtype, pipeline, result row)]."""
  rows = []
  for path in sorted(glob.glob(os.path.join(bench_dir, "*.json"))):
    try:
      d = json.load(open(path))
    except ValueError:
      continue
    if not isinstance(d, dict) or d.get("suite") != suite or d.get("device") != device:
      continue
    for r in d.get("results", []):
      rows.append((d["batch"], d["dtype"], d.get("pipeline") or d.get("classifier", ""), r))
  return rows


def series(rows, name, rate, peer_rate=None):
  """{label: [(batch, value)]} for the rows called ``name``: jaxdiff's ``rate(row, batch)`` per dtype and, where
  given, the peers' ``peer_rate`` (eager; compiled when a row has ``compiled_peer_seconds_per_call``)."""
  out = {}
  for batch, dtype, pipe, r in rows:
    if r.get("name") != name:
      continue
    tag = f"{dtype}{', ' + pipe if pipe else ''}"
    out.setdefault(f"jaxdiff {tag}", []).append((batch, rate(r, batch)))
    if peer_rate and r.get("peer_seconds_per_call"):
      out.setdefault(f"torch eager {tag}", []).append((batch, peer_rate(r, batch, "peer_seconds_per_call")))
    if peer_rate and r.get("compiled_peer_seconds_per_call"):
      out.setdefault(f"torch.compile {tag}", []).append((batch, peer_rate(r, batch, "compiled_peer_seconds_per_call")))
  return {k: sorted(v) for k, v in out.items()}


def draw(panels, out_png, title):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
  for ax, (name, (ylabel, lines)) in zip(axes[0], panels.items()):
    for label, pts in lines.items():
      ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", linestyle="--" if "torch" in label else "-",
              label=label)
    ax.set(xscale="log", xlabel="batch size", ylabel=ylabel, title=name)
    ax.grid(alpha=0.3)
    if lines:
      ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(out_png) or ".", exist_ok=True)
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
  return out_png


def main(argv):
  del argv
  f = flags.FLAGS
  per_sec = lambda r, b: r["images_per_sec"]
  peer_images = lambda r, b, key: b / r[key]
  unet = load(f.bench_dir, f.device, "unet")
  written = []
  if unet:
    panels = {}
    for name in ("unet_forward", "train_step"):
      panels[f"{name}: images/s"] = ("images / s", series(unet, name, per_sec, peer_images))
      panels[f"{name}: fraction of peak"] = ("fraction of the dtype's peak",
                                             series(unet, name, lambda r, b: r["fraction_of_peak"]))
    written.append(draw(panels, os.path.join(f.out, "bench_unet.png"), f"CIFAR-10 U-Net on {f.device}"))
  cert = load(f.bench_dir, f.device, "certify")
  if cert:
    draws = lambda r, b: r["draws_per_sec"]
    peer_draws = lambda r, b, key: r["n"] / r[key]
    panels = {"certification: draws/s": ("draws / s", series(cert, "certify_jaxdiff", draws, peer_draws)),
              "fraction of peak": ("fraction of the dtype's peak",
                                   series(cert, "certify_jaxdiff", lambda r, b: r["fraction_of_peak"]))}
    written.append(draw(panels, os.path.join(f.out, "bench_certify.png"), f"Denoised smoothing, N = 10,000, on {f.device}"))
  if not written:
    print(f"error: no unet or certify JSON for device {f.device!r} under {f.bench_dir}", file=sys.stderr)
    sys.exit(2)
  print("\n".join(written))


if __name__ == "__main__":
  app.run(main)
