"""A run killed part-way and restarted ends where an uninterrupted run ends, bit for bit."""
import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_ddpm_config
from jaxdiff.tasks.train import train_ddpm
from jaxdiff.train import IncompatibleCheckpointError


def test_resume_after_kill_matches_uninterrupted(tmp_path):
  full = train_ddpm(tiny_ddpm_config(6), str(tmp_path / "full"))
  killed_cfg = tiny_ddpm_config(6)
  killed_cfg.train.stop_at = 3  # "kill" after step 3: the last checkpoint is step 2
  part = train_ddpm(killed_cfg, str(tmp_path / "resumed"))
  assert int(part.step) == 3
  import shutil
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "3")  # lose the final save too: resume from 2
  resumed = train_ddpm(tiny_ddpm_config(6), str(tmp_path / "resumed"))
  assert int(resumed.step) == int(full.step) == 6
  for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree_util.tree_leaves(full.ema_params), jax.tree_util.tree_leaves(resumed.ema_params)):
    np.testing.assert_array_equal(a, b)
  rows = [json.loads(l) for l in open(tmp_path / "resumed" / "metrics.jsonl")]
  steps = [r["step"] for r in rows if "loss" in r]
  assert steps == sorted(set(steps)) == [2, 4, 6]  # nothing lost or duplicated
  assert os.path.isfile(tmp_path / "resumed" / "export" / "params.safetensors")


def test_incompatible_checkpoint_is_refused(tmp_path):
  from jaxdiff.parallel import make_mesh
  from jaxdiff.train import Checkpointer
  state = {"w": np.zeros(3, np.float32)}
  ck = Checkpointer(str(tmp_path), fingerprint={"model": {"base_channels": 8}}, save_every=1)
  ck.save(1, state)
  ck.close()
  ck = Checkpointer(str(tmp_path), fingerprint={"model": {"base_channels": 12}}, save_every=1)
  with pytest.raises(IncompatibleCheckpointError, match="different configuration"):
    ck.restore_latest(state, make_mesh())
  same = Checkpointer(str(tmp_path), fingerprint={"model": {"base_channels": 8}}, save_every=1)
  np.testing.assert_array_equal(same.restore_latest(state, make_mesh())["w"], state["w"])


def test_half_written_checkpoint_is_ignored(tmp_path):
  from jaxdiff.parallel import make_mesh
  from jaxdiff.train import Checkpointer
  state = {"w": np.arange(3, dtype=np.float32)}
  ck = Checkpointer(str(tmp_path), fingerprint={}, save_every=1)
  ck.save(1, state)
  ck.close()
  # A crash mid-save leaves only orbax's temporary directory: it must not count as a checkpoint.
  os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-123" / "state")
  ck = Checkpointer(str(tmp_path), fingerprint={}, save_every=1)
  assert ck.latest_step() == 1
  np.testing.assert_array_equal(ck.restore_latest(state, make_mesh())["w"], state["w"])


def test_diverging_run_stops_at_the_first_nan_and_keeps_the_last_good_checkpoint(tmp_path):
  from jaxdiff.errors import NonFiniteError
  from jaxdiff.train import Checkpointer
  wd = str(tmp_path / "wd")
  good = tiny_ddpm_config(4)
  train_ddpm(good, wd)  # checkpoints at steps 2 and 4, finite
  bad = tiny_ddpm_config(8)
  bad.optim.lr = 1e30  # the next step throws the weights to ~1e28 (lr in warm-up): the loss overflows
  with pytest.raises(NonFiniteError, match=r"step [56] .*loss=(nan|inf).*batch rows \[") as e:
    train_ddpm(bad, wd)
  assert "newest checkpoint (step 4)" in str(e.value)
  ck = Checkpointer(os.path.join(wd, "checkpoints"), fingerprint={}, save_every=2)
  assert ck.latest_step() == 4
  ck.close()
  from jaxdiff.convert import load_model
  assert load_model(os.path.join(wd, "export"))[2]["steps"] == 4  # the good run's export, finite, untouched
  rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
