"""DIFF2 end to end with tiny models: pinned report format, resumable stages; diff2_cifar wiring."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdiff.models import build_model, init_variables
from jaxdiff.tasks.common import export_model
from jaxdiff.tasks.diff2 import run_diff2


def _exports(tmp, size, channels):
  ucfg = ml_collections.ConfigDict(dict(
      name="unet", image_size=size, in_channels=channels, base_channels=8, channel_mults=(1, 2),
      attention_resolutions=(size // 2,), layers_per_block=1, norm_num_groups=4, dropout=0.0, dtype="float32"))
  unet = build_model(ucfg)
  export_model(str(tmp / "unet"), "unet", ucfg, init_variables(unet, ucfg, jax.random.key(0)),
               {"diffusion": {"schedule": "linear", "num_timesteps": 1000}})
  paths = [str(tmp / "unet")]
  for i in range(2):
    ccfg = ml_collections.ConfigDict(dict(name="cnn", image_size=size, in_channels=channels, num_classes=10,
                                          widths=(4,), dtype="float32"))
    clf = build_model(ccfg)
    export_model(str(tmp / f"cnn{i}"), "classifier", ccfg, init_variables(clf, ccfg, jax.random.key(i)))
    paths.append(str(tmp / f"cnn{i}"))
  return paths


def _shrink(c, paths):
  c.purify.update(denoiser=paths[0], num_steps=2)
  c.classifier.path = paths[1]
  c.diff2.update(surrogates=(paths[2],), trigger_steps=3, trigger_batch=16, sweep_t_bar=(10,),
                 transfer_classifiers=(paths[2],))
  c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=1)
  c.attack.update(pgd_steps=1)
  c.eval.update(num_examples=8, batch_size=8, robust_examples=4)  # fewer than a batch: slicing must hold
  c.certify.update(n=20, n0=5, num_images=2, batch_size=20)
  return c


def _check_report(wd, samplers):
  r = json.load(open(os.path.join(wd, "report.json")))
  assert r["attack"] in ("untargeted", "targeted")
  assert set(r["purification"]) == set(samplers)
  for s in samplers:
    for m in ("benign", "backdoored"):
      for k in ("clean_acc", "robust_acc", "asr"):
        if k in r["purification"][s][m]:
          assert 0.0 <= r["purification"][s][m][k] <= 1.0
      assert "asr" in r["purification"][s][m] and "clean_acc" in r["purification"][s][m]
  c = r["certification"]
  assert isinstance(c["sigma"], float) and len(c["radii"]) >= 1
  for m in ("benign", "backdoored"):
    for k in ("clean", "trigger"):
      assert len(c[m][k]) == len(c["radii"]) and all(0 <= v <= 1 for v in c[m][k])
  assert os.path.getsize(os.path.join(wd, "figure3.png")) > 500
  assert os.path.isfile(os.path.join(wd, "report.md"))
  return r


def test_diff2_digits_tiny_end_to_end_and_resume(tmp_path):
  from configs import diff2_digits
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(diff2_digits.get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.purify.samplers = ("ddpm", "ode")  # one stochastic, one deterministic: CPU compile time
  wd = str(tmp_path / "wd")
  r = run_diff2(c, wd)
  _check_report(wd, ("ddpm", "ode"))
  assert r["sweep_t_bar"]["t_bar"] == [10] and "transfer" in r and set(r["one_step"]) == {"benign", "backdoored"}
  from jaxdiff.robust.analysis import certified_accuracy, read_tsv
  for m in ("benign", "backdoored"):  # Table 6 comes from resumable CERTIFY TSVs, one per (model, inputs)
    for k in ("clean", "trigger"):
      tsv = os.path.join(wd, "certify", f"{m}_{k}_sigma0.5.tsv")
      assert len(read_tsv(tsv)["idx"]) == 2
      assert certified_accuracy(tsv, r["certification"]["radii"]) == r["certification"][m][k]
  trig = os.path.getmtime(os.path.join(wd, "trigger.npy"))
  exp = os.path.getmtime(os.path.join(wd, "finetune", "export", "params.safetensors"))
  # A rerun reuses the trigger and the fine-tuned model (evaluation kept minimal here).
  c.purify.update(samplers=("ddim",), one_step=False)
  c.attack.pgd_steps = 0
  c.certify.n = 0
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=())
  run_diff2(c, wd)
  assert os.path.getmtime(os.path.join(wd, "trigger.npy")) == trig
  assert os.path.getmtime(os.path.join(wd, "finetune", "export", "params.safetensors")) == exp


def test_input_specific_variant_runs_end_to_end(tmp_path):
  from configs import diff2_digits_input_specific
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(diff2_digits_input_specific.get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.purify.update(samplers=("ddim",), one_step=False)
  c.attack.pgd_steps = 0
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=(), input_specific_steps=2)
  c.certify.n = 0
  run_diff2(c, str(tmp_path / "wd"))
  r = json.load(open(tmp_path / "wd" / "report.json"))
  assert 0 <= r["purification"]["ddim"]["backdoored"]["asr"] <= 1
  assert not os.path.exists(tmp_path / "wd" / "trigger.npy")  # no universal trigger


_slow = pytest.mark.slow  # same code path as a fast-tier variant; only the trigger or target formula differs


@pytest.mark.parametrize("variant", ["diff2_digits_patch", "diff2_digits_poison", "diff2_digits_trojdiff_patch",
                                     pytest.param("diff2_digits_blend", marks=_slow),
                                     pytest.param("diff2_digits_warp", marks=_slow),
                                     pytest.param("diff2_digits_trojdiff_adversarial", marks=_slow)])
def test_diff2_variant_configs_fine_tune(tmp_path, variant):
  """Each variant's own part (trigger + fine-tuning loss) runs from its config; the evaluation they share
  is covered end to end above. stop_after='finetune' stops after the export."""
  import importlib
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(importlib.import_module(f"configs.{variant}").get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.diff2.update(stop_after="finetune", patch_size=min(c.diff2.patch_size, 3))
  wd = tmp_path / "wd"
  assert run_diff2(c, str(wd)) is None
  assert (wd / "finetune" / "export" / "params.safetensors").is_file() and not (wd / "report.json").exists()
  rows = [json.loads(l) for l in open(wd / "finetune" / "metrics.jsonl")]
  assert rows and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)


def test_per_sampler_step_override():
  from configs import diff2_digits
  from jaxdiff.tasks.common import sampler_steps
  c = diff2_digits.get_config()
  assert sampler_steps(c.purify, "ddpm") == 4 and sampler_steps(c.purify, "ode") == 8
  c.purify.update(num_steps=0)
  c.purify.sampler_steps.ode = 0
  assert sampler_steps(c.purify, "ode") is None  # every index from t̄


def test_bad_trigger_scheme_combinations_fail_before_any_work(tmp_path):
  from configs import diff2_digits_trojdiff_adversarial
  c = diff2_digits_trojdiff_adversarial.get_config()
  c.diff2.trigger = "warp"
  with pytest.raises(ValueError, match="trigger='adversarial'"):
    run_diff2(c, str(tmp_path / "wd"))
  c.diff2.update(trigger="adversarial", scheme="badnets")
  with pytest.raises(ValueError, match="scheme"):
    run_diff2(c, str(tmp_path / "wd"))
  assert not os.path.exists(tmp_path / "wd")


def test_diff2_cifar_config_runs_first_steps_on_synthetic_data(tmp_path):
  from configs import diff2_cifar
  paths = _exports(tmp_path, 32, 3)
  c = _shrink(diff2_cifar.get_config(), paths)
  c.data.update(name="synthetic", image_size=32, num_examples=64)
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=())
  wd = str(tmp_path / "wd")
  run_diff2(c, wd)
  _check_report(wd, ("ddpm",))
  assert c.diff2.alpha == 0.05 and c.diff2.t_trunc == 300 and c.optim.lr == 2e-4 and c.purify.t_bar == 75
