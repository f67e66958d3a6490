import json
import sys
import types

from jaxdiff.io import MetricWriter


def test_jsonl_resume_truncation_and_tensorboard_hook(tmp_path, monkeypatch):
  calls = []

  class FakeWriter:  # stands in for tensorboardX.SummaryWriter
    def __init__(self, logdir):
      calls.append(("init", logdir))

    def add_scalar(self, k, v, step):
      calls.append((k, v, step))

    def flush(self):
      pass

  monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeWriter))
  w = MetricWriter(str(tmp_path), console=False)
  for s in (1, 2, 3):
    w.write(s, {"loss": 1.0 / s})
  assert ("loss", 0.5, 2) in calls and calls[0][1].endswith("tensorboard")
  MetricWriter(str(tmp_path), resume_step=2, console=False)  # a run resumed from step 2
  assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [1, 2]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
  import os
  from jaxdiff.io import atomic_write
  atomic_write(tmp_path / "a.json", "{}")
  with open(tmp_path / "b.json", "w") as f:
    f.write("{}")
  assert os.stat(tmp_path / "a.json").st_mode & 0o777 == os.stat(tmp_path / "b.json").st_mode & 0o777
