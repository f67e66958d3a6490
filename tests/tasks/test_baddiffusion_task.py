"""The baddiffusion task end to end with tiny random-weight models: pinned report format, the export, the
grids and plots, resumable stages, and bad inputs refused before any work."""
import json
import os

import pytest

from conftest import tiny_exports
from jaxdiff.errors import ConfigError, IncompatibleResultsError
from jaxdiff.tasks.baddiffusion import run_baddiffusion


def _tiny(tmp_path):
  from configs import baddiffusion_digits
  unet, cnn, _ = tiny_exports(tmp_path, 8, 1)
  c = baddiffusion_digits.get_config()
  c.data.image_size = 8
  c.model.update(image_size=8, init_from=unet)
  c.baddiffusion.update(fid_classifier=cnn, sample_steps=3, num_samples=4, fid_samples=8, sample_batch=8,
                        samplers=("ddim",), trigger_size=14)
  c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=1)
  return c


@pytest.mark.slow  # ~60 s; tests/backdoor/test_baddiffusion.py covers the attack in the fast tier
def test_baddiffusion_tiny_end_to_end_resume_and_refusals(tmp_path):
  c = _tiny(tmp_path)
  c.baddiffusion.sweep_poison_rate = (0.5, c.baddiffusion.poison_rate)
  c.baddiffusion.update(inpainting=("box", "blur"), inpainting_samples=4)
  wd = tmp_path / "wd"
  r = run_baddiffusion(c, str(wd))
  assert {(row["model"], row["corruption"]) for row in r["inpainting"]} == {
      (m, k) for m in ("clean", "backdoored") for k in ("box", "blur")}
  for row in r["inpainting"]:
    assert row["num_images"] == 4 and 0 <= row["asr"] <= 1 and -1 <= row["ssim_clean"] <= 1 and row["mse_target"] >= 0
  assert os.path.getsize(wd / "inpainting" / "backdoored_box.png") > 300 and "Inpainting (App. C)" in open(wd / "report.md").read()
  assert r == json.load(open(wd / "report.json"))
  assert {(row["model"], row["clip"]) for row in r["rows"]} == {(m, k) for m in ("clean", "backdoored")
                                                                 for k in (False, True)}
  for row in r["rows"]:
    assert set(row) >= {"model", "sampler", "clip", "mse", "ssim", "asr", "fid", "num_samples"}
    assert 0 <= row["asr"] <= 1 and row["mse"] >= 0 and row["fid"] >= 0 and row["num_samples"] == 4
  for k in ("fid_features", "fid_reference", "mse_threshold", "trigger", "target", "poison_rate"):
    assert k in r
  assert "digits train split" in r["fid_reference"] and r["trigger"] == "stop_sign" and r["target"] == "hat"
  meta = json.load(open(wd / "backdoored" / "meta.json"))
  assert meta["backdoor"] == {"attack": "baddiffusion", "trigger": "stop_sign", "trigger_size": 14, "target": "hat",
                              "poison_rate": 0.1, "sampler_family": "sde"}
  from jaxdiff.convert import load_model
  load_model(str(wd / "backdoored"), kind="unet")  # loadable like the shipped models
  for f in ("patterns.png", "report.md", "samples/backdoored_ddim_clip.png", "figure2_mse.png", "figure2_fid.png",
            "figure5_clipping.png"):
    assert os.path.getsize(wd / f) > 300, f
  assert [row["poison_rate"] for row in r["sweep"]].count(0.5) == 2  # the sub-run: backdoored rows, 2 clip settings
  assert os.path.exists(wd / "sweep" / "stop_sign-hat-p0.5" / "backdoored" / "params.safetensors")
  # a rerun reuses the fine-tunes; another poison rate on this workdir is refused
  mtime = os.path.getmtime(wd / "backdoored" / "params.safetensors")
  c.baddiffusion.update(sweep_poison_rate=(), clip=(False,), anp_lrs=(0.0, 0.5), anp_iterations=2, anp_batch=4,
                        anp_threshold=0.999)  # App. B: ANP rows, on the reused fine-tune
  r = run_baddiffusion(c, str(wd))
  assert os.path.getmtime(wd / "backdoored" / "params.safetensors") == mtime
  anp = {row["setting"]: row for row in r["anp"]}
  assert list(anp) == ["none", "anp_lr=0", "anp_lr=0.5"]
  base = next(row for row in r["rows"] if row["model"] == "backdoored")
  assert anp["none"]["mse"] == base["mse"] and anp["none"]["pruned_fraction"] == 0.0
  # rate 0: masks stay at 1, nothing pruned, the same noise gives the same samples
  assert anp["anp_lr=0"]["pruned_fraction"] == 0.0 and anp["anp_lr=0"]["mse"] == pytest.approx(base["mse"], rel=1e-6)
  assert 0 < anp["anp_lr=0.5"]["pruned_fraction"] <= 1 and anp["anp_lr=0.5"]["mse"] != base["mse"]
  assert os.path.getsize(wd / "anp.png") > 1000 and os.path.getsize(wd / "anp" / "lr0.5.png") > 100
  assert "## ANP (App. B)" in open(wd / "report.md").read()
  c.baddiffusion.poison_rate = 0.2
  with pytest.raises(IncompatibleResultsError, match=r"baddiffusion\.poison_rate: 0\.1 in the workdir, 0\.2 now"):
    run_baddiffusion(c, str(wd))


@pytest.mark.parametrize("field,value,message", [
    ("trigger", "heart", "config.baddiffusion.trigger = 'heart'"),
    ("target", "dog", "config.baddiffusion.target = 'dog'"),
    ("poison_rate", 1.5, "config.baddiffusion.poison_rate = 1.5: must be a number ≥ 0 and ≤ 1"),
    ("trigger_size", 40, "config.baddiffusion.trigger_size = 40"),
    ("fid_features", "inception", "config.baddiffusion.inception_weights is empty"),
])
def test_bad_inputs_are_refused_before_any_work(tmp_path, field, value, message):
  from configs import baddiffusion_digits
  c = baddiffusion_digits.get_config()
  c.baddiffusion[field] = value
  with pytest.raises(ConfigError) as e:
    run_baddiffusion(c, str(tmp_path / "wd"))
  assert message in str(e.value) and not os.path.exists(tmp_path / "wd")
