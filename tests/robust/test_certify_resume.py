"""The CERTIFY TSV: header, row per image, resumable after a kill (torn line dropped), analysis."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.metrics import certified_accuracy
from jaxdiff.report import plot_certified
from jaxdiff.robust import TSV_HEADER, certify_dataset, read_tsv


def base(x):
  return (x[:, 0, 0, 0] > 0.5).astype(jnp.int32)


def _data():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (6, 2, 2, 1)).astype(np.float32)
  y = (x[:, 0, 0, 0] > 0.5).astype(np.int32)
  return x, y, np.arange(100, 106)


def _run(path, x, y, idx):
  certify_dataset(base, x, y, idx, str(path), key=jax.random.key(0), sigma=0.25, num_classes=2, n0=50, n=500,
                  alpha=0.001, batch_size=500)


def test_resume_loses_and_duplicates_nothing(tmp_path):
  x, y, idx = _data()
  full = tmp_path / "full.tsv"
  _run(full, x, y, idx)
  part = tmp_path / "part.tsv"
  _run(part, x[:3], y[:3], idx[:3])  # "killed" after 3 images ...
  with open(part, "a") as f:
    f.write("103\t1\t1\t0.2")  # ... in the middle of writing the 4th row
  _run(part, x, y, idx)
  lines = open(part).read().splitlines()
  assert lines[0].split("\t") == TSV_HEADER and len(lines) == 7
  a, b = read_tsv(full), read_tsv(part)
  assert sorted(b["idx"]) == list(range(100, 106))
  for k in ("idx", "label", "predict", "radius", "correct"):
    np.testing.assert_array_equal(a[k], b[k])


def test_certified_accuracy_and_plot(tmp_path):
  p = tmp_path / "r.tsv"
  p.write_text("\t".join(TSV_HEADER) + "\n" + "0\t1\t1\t0.6\t1\t0.1\t900\n1\t0\t-1\t0\t0\t0.1\t400\n"
               "2\t1\t0\t0.9\t0\t0.1\t950\n3\t0\t0\t0.3\t1\t0.1\t700\n")
  assert certified_accuracy(read_tsv(p), [0, 0.25, 0.5, 1.0]) == [0.5, 0.5, 0.25, 0.0]
  plot_certified({"a": read_tsv(p)}, str(tmp_path / "plot.png"))
  assert (tmp_path / "plot.png").stat().st_size > 1000
