"""The purification and certify tasks end to end with tiny random-weight models: report contents agree
with what they summarise (accuracies recomputed from the same inputs, Table from the TSVs)."""
import json
import os

import pytest

from conftest import tiny_exports
from jaxdiff import tasks


def _tiny(config_module, tmp_path):
  import importlib
  paths = tiny_exports(tmp_path, 8, 1)
  c = importlib.import_module(f"configs.{config_module}").get_config()
  c.data.image_size = 8
  c.purify.update(denoiser=paths[0], num_steps=2, samplers=("ddim",))
  c.classifier.path = paths[1]
  c.eval.update(num_examples=6, stride=3, batch_size=4)
  return c


@pytest.mark.slow  # ~80 s of CPU compiles; the fast tier is at its 30-min budget. Run with -m slow.
def test_purification_task_reports_clean_and_pgd(tmp_path):
  """AutoAttack through the purifier is the same `autoattack_fn` the diff2_cifar wiring test runs; here it is
  off to save its compile time on CPU."""
  c = _tiny("purify_digits", tmp_path)
  c.attack.update(pgd_steps=2, autoattack=False, eot=1)
  r = tasks.run(c, str(tmp_path / "wd"))
  from jaxdiff.fingerprints import canonical  # the JSON form: tuples are lists there
  assert canonical(r) == json.load(open(tmp_path / "wd" / "report.json")) and r["num_examples"] == 6
  from jaxdiff.metrics import accuracy
  from jaxdiff.tasks.common import eval_subset, load_classifier
  x, y, idx = eval_subset(c)
  assert list(idx) == [0, 3, 6, 9, 12, 15]
  model, variables = load_classifier(c.classifier.path)
  assert r["classifier"]["clean_acc"] == accuracy(lambda z: model.apply(variables, z), x, y, 4)  # a deterministic f: recomputable exactly
  assert 0 <= r["classifier"]["pgd_acc"] <= 1
  res = r["purification"]["ddim"]
  assert all(0 <= res[k] <= 1 for k in ("clean_acc", "pgd_acc")) and "autoattack_acc" not in res
  assert os.path.getsize(tmp_path / "wd" / "purification_grid.png") > 200
  assert "PGD acc" in open(tmp_path / "wd" / "report.md").read()


def test_certify_task_table_matches_its_tsvs(tmp_path):
  c = _tiny("certify_digits", tmp_path)
  c.certify.update(sigmas=(0.5,), n=40, n0=8, batch_size=40)
  tasks.run(c, str(tmp_path / "wd"))
  from jaxdiff.metrics import certified_accuracy
  from jaxdiff.robust import read_tsv
  tsvs = [p for p in os.listdir(tmp_path / "wd") if p.endswith(".tsv")]
  assert len(tsvs) == 1
  rows = read_tsv(tmp_path / "wd" / tsvs[0])
  assert sorted(rows["idx"].tolist()) == [0, 3, 6, 9, 12, 15]
  r = json.load(open(tmp_path / "wd" / "report.json"))
  assert r["certified_accuracy"]["σ = 0.5"] == certified_accuracy(read_tsv(tmp_path / "wd" / tsvs[0]), c.certify.radii)
  assert r["num_examples"] == 6 and "σ = 0.5" in open(tmp_path / "wd" / "report.md").read()
  assert os.path.getsize(tmp_path / "wd" / "certified_accuracy.png") > 200
  # A rerun under another N must not keep the old rows under the new label: refused, or replaced on request.
  from jaxdiff.errors import IncompatibleResultsError
  c.certify.n = 20
  with pytest.raises(IncompatibleResultsError, match=r"certify\.n: 40 in the workdir, 20 now"):
    tasks.run(c, str(tmp_path / "wd"))
  c.overwrite = True
  tasks.run(c, str(tmp_path / "wd"))
  rows = read_tsv(tmp_path / "wd" / tsvs[0])
  assert sorted(rows["idx"].tolist()) == [0, 3, 6, 9, 12, 15]
  counts = [int(l.split("\t")[6]) for l in open(tmp_path / "wd" / tsvs[0]).read().splitlines()[1:]]
  assert max(counts) <= 20  # every row was made with N = 20

