"""DIFF2 entropy-based detection over a tiny population: pinned report format, resume, dispatch by config."""
import json
import os

import numpy as np
import pytest

from conftest import tiny_exports as _exports
from jaxdiff import tasks


def _tiny(tmp_path):
  from configs import diff2_detect_digits
  paths = _exports(tmp_path, 8, 1)
  c = diff2_detect_digits.get_config()
  c.data.image_size, c.model.image_size = 8, 8
  c.purify.update(denoiser=paths[0], num_steps=2)
  c.classifier.path = paths[1]
  c.diff2.update(surrogates=(paths[2],), trigger_steps=2, trigger_batch=8)
  c.train.update(batch_size=8, log_every=1)
  c.eval.update(num_examples=8, batch_size=8)
  c.defense.update(population_benign=0, population_untargeted=0, population_targeted=1, population_steps=2,
                   entropy_trials=3, entropy_inputs=6, entropy_steps=2)
  return c


def test_entropy_detection_population_report_and_resume(tmp_path, monkeypatch):
  c = _tiny(tmp_path)
  wd = str(tmp_path / "wd")
  r = tasks.run(c, wd)  # the diff2 task dispatches on defense.name
  assert r == json.load(open(os.path.join(wd, "report.json")))
  assert r["defense"] == "entropy"
  names = ["phi", "targeted_0"]
  assert [m["model"] for m in r["detection"]] == names == [row["model"] for row in r["rows"]]
  for m in r["detection"]:
    assert m["backdoored_truth"] == (m["model"] == "targeted_0")
    assert len(m["entropy_raw"]) == 3 and all(0 <= e <= np.log(10) + 1e-9 for e in m["entropy_raw"])
    assert m["flagged"] == (np.mean(m["entropy_filtered"]) < r["threshold"])
  for row in r["rows"]:
    assert row["setting"] == "entropy" and row["adv_acc"] is None and 0 <= row["clean_acc"] <= 1
  s = r["summary"]
  flags = np.array([m["flagged"] for m in r["detection"]])
  truth = np.array([m["backdoored_truth"] for m in r["detection"]])
  assert s["accuracy"] == (flags == truth).mean() and s["false_positives"] == (flags & ~truth).sum()
  assert r["threshold_source"].startswith("calibrated")
  for fig in ("figure9", "figure10"):
    assert os.path.getsize(os.path.join(wd, f"{fig}.png")) > 1000
  assert "entropy-based detection" in open(os.path.join(wd, "report.md")).read()
  # φ is measured with the trigger untargeted_0 (and benign_0) would have; targeted_0 has its own
  assert sorted(os.listdir(os.path.join(wd, "population", "triggers"))) == ["targeted_0", "untargeted_0"]
  assert sorted(os.listdir(os.path.join(wd, "population"))) == ["phi", "targeted_0", "triggers"]
  # Resume: every model's measures are reused; a fixed threshold only changes the verdicts
  from jaxdiff.tasks.diff2 import detection

  def never(*a, **k):
    raise AssertionError("a finished model was measured again")
  monkeypatch.setattr(detection, "purified_label_entropies", never)
  c.defense.entropy_threshold = 5.0  # above ln 10: everything is flagged
  r2 = tasks.run(c, wd)
  assert [m["entropy_raw"] for m in r2["detection"]] == [m["entropy_raw"] for m in r["detection"]]
  assert all(m["flagged"] for m in r2["detection"]) and r2["summary"]["false_positives"] == 1
  assert r2["threshold"] == 5.0 and r2["threshold_source"].startswith("config")
  # §5.6: Elijah on the same population, beside the (reused) entropy verdicts
  c.defense.update(name="elijah", elijah_iterations=2, elijah_batch=4, elijah_steps=2)
  r3 = tasks.run(c, wd)
  assert r3["defense"] == "elijah" and [row["setting"] for row in r3["rows"]] == ["elijah"] * 2
  assert [m["entropy_raw"] for m in r3["detection"]] == [m["entropy_raw"] for m in r["detection"]]
  for m in r3["detection"]:
    assert set(m["elijah"]) >= {"uniformity", "total_variation", "loss"} and "tau" not in m["elijah"]
  # leave-one-out over two models: the other one is of a single kind, nothing to learn (the forest's verdicts:
  # tests/tasks/test_defend_zoo_task.py)
  assert [m["elijah_backdoored"] for m in r3["detection"]] == [None, None] and r3["summary"]["elijah_accuracy"] is None
  assert os.path.getsize(os.path.join(wd, "elijah_triggers.png")) > 100
  assert "Elijah against DIFF2" in open(os.path.join(wd, "report.md")).read()
  for name in names:
    tau = json.load(open(os.path.join(wd, "population", name, "elijah.json")))["result"]["tau"]
    assert np.asarray(tau).shape == (8, 8, 1)


def test_entropy_detection_needs_a_backdoored_model():
  from configs import diff2_detect_digits
  from jaxdiff.errors import ConfigError
  from jaxdiff.tasks.config import validate
  c = diff2_detect_digits.get_config()
  validate(c)
  c.defense.update(population_untargeted=0, population_targeted=0)
  with pytest.raises(ConfigError, match="population_targeted must be ≥ 1"):
    validate(c)


@pytest.mark.slow  # four tiny fine-tunes and their entropies (~30 s)
def test_a_given_threshold_judges_held_out_models_made_under_other_settings(tmp_path):
  c = _tiny(tmp_path)
  c.defense.update(population_targeted=0, entropy_threshold=2.0, heldout_seeds=1, heldout_steps=(2,),
                   heldout_alphas=(0.3,))
  wd = str(tmp_path / "wd")
  r = tasks.run(c, wd)
  assert [m["model"] for m in r["detection"]] == ["phi"] and r["threshold"] == 2.0
  held = {m["model"]: m for m in r["heldout"]}
  assert sorted(held) == sorted(f"heldout_{s}_{k}_0" for s in ("steps2", "alpha0.3") for k in ("benign", "untargeted"))
  for m in held.values():
    assert m["flagged"] == (m["score"] < 2.0) and m["backdoored_truth"] == (m["kind"] == "untargeted")
    assert (m["steps"], m["alpha"]) == ((2, c.diff2.alpha) if m["setting"] == "steps2" else (2, 0.3))
  h = r["summary"]["heldout"]
  flags = np.array([m["flagged"] for m in r["heldout"]])
  truth = np.array([m["backdoored_truth"] for m in r["heldout"]])
  assert h["tpr"] == flags[truth].mean() and h["fpr"] == flags[~truth].mean()
  assert set(h["by_setting"]) == {"steps2", "alpha0.3"} and h["by_setting"]["steps2"]["n_benign"] == 1
  # each setting's benign and untargeted model share one trigger, made at that setting's α and a held-out seed
  trig = os.path.join(wd, "population", "triggers")
  assert sorted(os.listdir(trig)) == ["heldout_alpha0.3_0", "heldout_steps2_0", "untargeted_0"]
  cfg = json.load(open(os.path.join(trig, "heldout_alpha0.3_0", "trigger.fingerprint.json")))
  assert cfg["diff2.alpha"] == 0.3 and cfg["seed"] == c.seed + 1000
  md = open(os.path.join(wd, "report.md")).read()
  assert "## Held-out models" in md and ("Every setting separates" in md or "does not separate under" in md)
