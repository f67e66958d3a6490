"""DIFF2 Table 9 wiring with tiny models: one sub-run per (attack, mode), rows per target classifier, reuse."""
import json
import os

import pytest

from conftest import tiny_exports as _exports
from jaxdiff import tasks


@pytest.mark.slow  # two DIFF2 sub-runs (~2 min of CPU compiles); run with -m slow
def test_advtrain_rows_per_attack_mode_and_target(tmp_path, monkeypatch):
  from configs import diff2_digits_advtrain
  unet, cnn0, cnn1 = _exports(tmp_path, 8, 1)
  c = diff2_digits_advtrain.get_config()
  c.data.image_size, c.model.image_size = 8, 8
  c.purify.update(denoiser=unet, num_steps=2)
  c.classifier.path = cnn0
  # cnn1 plays the adversarially trained target and the adaptive surrogate; cnn0 the standard surrogate
  c.diff2.update(surrogates=(cnn0,), trigger_steps=2, trigger_batch=8)
  c.defense.update(advtrain_targets=(cnn1,), adaptive_surrogates=(cnn1,), advtrain_attacks=("untargeted",))
  c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=1)
  c.eval.update(num_examples=8, batch_size=8)
  wd = str(tmp_path / "wd")
  r = tasks.run(c, wd)
  assert r["defense"] == "advtrain" and r == json.load(open(os.path.join(wd, "report.json")))
  settings = {(row["model"], row["setting"]) for row in r["rows"]}
  assert settings == {(m, f"untargeted,{mode},target={t}") for m in ("phi", "phi_star")
                      for mode in ("non_adaptive", "adaptive") for t in ("cnn0", "cnn1")}
  for row in r["rows"]:
    assert 0 <= row["clean_acc"] <= 1 and 0 <= row["asr"] <= 1 and row["adv_acc"] is None
  # the two modes differ only by the trigger's surrogate: the adaptive one is optimised on cnn1
  na = json.load(open(os.path.join(wd, "untargeted_non_adaptive", "point.fingerprint.json")))
  ad = json.load(open(os.path.join(wd, "untargeted_adaptive", "point.fingerprint.json")))
  assert na["diff2"]["surrogates"] == [cnn0] and ad["diff2"]["surrogates"] == [cnn1]
  # the undefended cells equal the sub-run's own evaluation
  sub = json.load(open(os.path.join(wd, "untargeted_adaptive", "report.json")))
  phi = next(row for row in r["rows"] if row["setting"] == "untargeted,adaptive,target=cnn1" and row["model"] == "phi")
  assert (phi["clean_acc"], phi["asr"]) == (sub["transfer"][cnn1]["benign"]["clean_acc"],
                                            sub["transfer"][cnn1]["benign"]["asr"])
  # a rerun reads the finished sub-runs back
  from jaxdiff.tasks.diff2 import pipeline
  monkeypatch.setattr(pipeline, "run_diff2", lambda *a: (_ for _ in ()).throw(AssertionError("re-ran a sub-run")))
  assert tasks.run(c, wd)["rows"] == r["rows"]
