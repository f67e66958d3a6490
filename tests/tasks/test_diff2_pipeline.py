"""DIFF2 end to end with tiny models: pinned report format, resumable stages; diff2_cifar wiring."""
import json
import os

import numpy as np
import pytest

from conftest import tiny_exports as _exports
from jaxdiff.tasks.diff2 import run_diff2
from jaxdiff.train import IncompatibleCheckpointError

_slow = pytest.mark.slow


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
      res = r["purification"][s][m]
      for k in ("clean_acc", "robust_acc", "asr", "robust_acc_pgd", "robust_acc_autoattack"):
        if k in res:
          assert 0.0 <= res[k] <= 1.0
      assert "asr" in res and "clean_acc" in res
      # robust_acc is the per-input worst case over the attacks run
      per_attack = [res[k] for k in ("robust_acc_pgd", "robust_acc_autoattack") if k in res]
      assert ("robust_acc" in res) == bool(per_attack)
      if per_attack:
        assert res["robust_acc"] <= min(per_attack)
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
  assert os.path.getsize(os.path.join(wd, "figure4.png")) > 1000
  assert r["sweep_t_bar"]["t_bar"] == [10] and "transfer" in r and set(r["one_step"]) == {"benign", "backdoored"}
  from jaxdiff.metrics import certified_accuracy
  from jaxdiff.robust import read_tsv
  for m in ("benign", "backdoored"):  # Table 6 comes from resumable CERTIFY TSVs, one per (model, inputs)
    for k in ("clean", "trigger"):
      tsv = os.path.join(wd, "certify", f"{m}_{k}_sigma0.5.tsv")
      assert len(read_tsv(tsv)["idx"]) == 2
      assert certified_accuracy(read_tsv(tsv), r["certification"]["radii"]) == r["certification"][m][k]
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
  c.diff2.lam = 2.0  # φ* was fine-tuned with λ = 1: refuse to reuse it silently
  with pytest.raises(IncompatibleCheckpointError, match="lam"):
    run_diff2(c, wd)


@_slow  # a whole DIFF2 run with per-input triggers (~3 min); run with -m slow
def test_input_specific_variant_runs_end_to_end(tmp_path):
  from configs import diff2_digits_input_specific
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(diff2_digits_input_specific.get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.purify.update(samplers=("ddim",), one_step=False)
  c.attack.pgd_steps = 0
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=(), input_specific_steps=2,
                 sweep_alpha=(0.1, c.diff2.alpha))  # Figure 5: α = 0.1 is one more run, the other is this one
  c.certify.n = 0
  wd = tmp_path / "wd"
  r = run_diff2(c, str(wd))
  assert r == json.load(open(wd / "report.json"))
  assert 0 <= r["purification"]["ddim"]["backdoored"]["asr"] <= 1
  assert not os.path.exists(wd / "trigger.npy")  # no universal trigger
  s = r["sweep_alpha"]
  assert s["alpha"] == [0.1, c.diff2.alpha] and len(s["backdoored"]["asr"]) == len(s["benign"]["clean_acc"]) == 2
  assert s["backdoored"]["asr"][1] == r["purification"]["ddim"]["backdoored"]["asr"]
  sub_wd = wd / "sweep_alpha" / "alpha=0.1"
  sub = json.load(open(sub_wd / "report.json"))
  assert list(sub["purification"]) == ["ddim"] and "certification" not in sub and "sweep_alpha" not in sub
  assert s["benign"]["asr"][0] == sub["purification"]["ddim"]["benign"]["asr"]
  meta = json.load(open(sub_wd / "finetune" / "export" / "meta.json"))
  assert meta["diff2"]["alpha"] == 0.1 and meta["diff2"]["trigger"] == "input_specific"
  assert os.path.getsize(wd / "figure5.png") > 1000 and "Figure 5" in open(wd / "report.md").read()




# the slow variants: same code path as a fast-tier one; only the trigger or target formula differs
@pytest.mark.parametrize("variant", ["diff2_digits_patch", pytest.param("diff2_digits_poison", marks=_slow),
                                     pytest.param("diff2_digits_trojdiff_patch", marks=_slow),
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


def test_sweep_points_and_reuse_of_finished_points(tmp_path, monkeypatch):
  """Figure 5/6 sweeps: each point's config, reuse of the main run's point and of finished sub-runs
  (a stored report with another sampler is re-evaluated, here caught by a sentinel)."""
  from configs import diff2_digits_figures
  from jaxdiff.tasks import diff2
  from jaxdiff.tasks.diff2 import pipeline
  c = diff2_digits_figures.get_config()
  p = diff2.sweep_point_config(c, "trigger_size", 8)
  assert p.diff2.patch_size == 8 and p.diff2.alpha == c.diff2.alpha and p.certify.n == 0
  assert diff2.sweep_point_config(c, "trigger_size", 16).diff2.patch_size == 0  # full size
  p = diff2.sweep_point_config(c, "alpha", 0.3)
  assert p.diff2.alpha == 0.3 and p.diff2.sweep_alpha == () and p.diff2.sweep_trigger_size == ()
  assert p.purify.samplers == ("ddpm",) and c.diff2.sweep_alpha == (0.1, 0.2, 0.3)  # the main config is untouched
  main = {"purification": {"ddpm": {m: {"asr": 0.5, "clean_acc": 0.9} for m in ("benign", "backdoored")}}}
  from jaxdiff.fingerprints import check_or_record
  for v, asr in ((0.1, 0.25), (0.3, 0.75)):  # finished points: report.json + the point's fingerprint
    d = tmp_path / "sweep_alpha" / f"alpha={v:g}"
    d.mkdir(parents=True)
    json.dump({"purification": {"ddpm": {m: {"asr": asr, "clean_acc": 1.0} for m in ("benign", "backdoored")}}},
              open(d / "report.json", "w"))
    check_or_record(str(d / "point.fingerprint.json"), diff2.sweep_point_config(c, "alpha", v).to_dict(), what="x")
  s = diff2.run_sweep(c, str(tmp_path), "alpha", main)
  assert s == {"alpha": [0.1, 0.2, 0.3], "benign": {"asr": [0.25, 0.5, 0.75], "clean_acc": [1.0, 0.9, 1.0]},
               "backdoored": {"asr": [0.25, 0.5, 0.75], "clean_acc": [1.0, 0.9, 1.0]}}
  c.purify.samplers = ("ddim",)  # another config: both points run again
  main["purification"]["ddim"] = main["purification"]["ddpm"]
  calls = []
  monkeypatch.setattr(pipeline, "run_diff2", lambda cfg, wd: calls.append((cfg.diff2.alpha, cfg.purify.samplers)) or {
      "purification": {"ddim": main["purification"]["ddpm"]}})
  diff2.run_sweep(c, str(tmp_path), "alpha", main)
  assert calls == [(0.1, ("ddim",)), (0.3, ("ddim",))]
  assert json.load(open(tmp_path / "sweep_alpha" / "alpha=0.1" / "point.fingerprint.json"))["purify"]["samplers"] == ["ddim"]


def test_finetune_fingerprint_ignores_evaluation_only_keys():
  from configs import diff2_digits
  from jaxdiff.tasks.diff2 import finetune_fingerprint
  c = diff2_digits.get_config()
  fp = finetune_fingerprint(c)
  c.diff2.update(sweep_t_bar=(), sweep_alpha=(0.1,), transfer_classifiers=("x",), stop_after="finetune")
  assert finetune_fingerprint(c) == fp
  c.diff2.lam = 2.0
  assert finetune_fingerprint(c) != fp


def test_sweep_values_are_checked():
  from configs import diff2_digits_figures, diff2_digits_warp
  from jaxdiff.tasks.config import validate
  c = diff2_digits_figures.get_config()
  c.diff2.sweep_alpha = (0.1, 1.5)
  with pytest.raises(ValueError, match="sweep_alpha"):
    validate(c)
  w = diff2_digits_warp.get_config()
  w.diff2.sweep_trigger_size = (4,)
  with pytest.raises(ValueError, match="sweep_trigger_size"):
    validate(w)


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


@_slow  # the CIFAR-size U-Net's first steps on CPU (~5 min); run with -m slow
def test_diff2_cifar_config_runs_first_steps_on_synthetic_data(tmp_path):
  from configs import diff2_cifar
  paths = _exports(tmp_path, 32, 3)
  c = _shrink(diff2_cifar.get_config(), paths)
  c.data.update(name="synthetic", image_size=32, num_examples=64)
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=())
  assert c.attack.autoattack and c.attack.eot == 20  # Table 2 under PGD and AutoAttack-rand (EOT 20)
  c.attack.update(aa_steps=2, eot=1, pgd_steps=0)  # PGD is covered on digits; one attack compile here
  wd = str(tmp_path / "wd")
  run_diff2(c, wd)
  r = _check_report(wd, ("ddpm",))
  res = r["purification"]["ddpm"]["backdoored"]
  assert "robust_acc_autoattack" in res and res["robust_acc"] == res["robust_acc_autoattack"]
  assert c.diff2.alpha == 0.05 and c.diff2.t_trunc == 300 and c.optim.lr == 2e-4 and c.purify.t_bar == 75


@pytest.mark.slow  # ~40 s; tests/robust/test_purification.py covers the re-projection in the fast tier
def test_reprojection_defense_rows(tmp_path):
  from configs import diff2_digits_reproject
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(diff2_digits_reproject.get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=())
  c.certify.n = 0
  c.defense.reproject_eps = (1e-6,)  # one compile of the purifier per radius: keep CI short
  r = run_diff2(c, str(tmp_path / "wd"))
  assert r["defense"] == "reproject" and r == json.load(open(tmp_path / "wd" / "report.json"))
  rows = {(row["model"], row["setting"]): row for row in r["rows"]}
  assert set(rows) == {(m, s) for m in ("phi", "phi_star")
                       for s in ("none", "reproject_eps=1e-06")}
  for row in r["rows"]:
    assert 0 <= row["clean_acc"] <= 1 and 0 <= row["asr"] <= 1 and 0 <= row["adv_acc"] <= 1
    assert row["adv_acc_pgd"] == row["adv_acc"] and "adv_acc_autoattack" not in row  # PGD only here
  for m, name in (("phi", "benign"), ("phi_star", "backdoored")):  # the undefended row is the main evaluation
    main = r["purification"]["ddpm"][name]
    assert (rows[m, "none"]["clean_acc"], rows[m, "none"]["asr"]) == (main["clean_acc"], main["asr"])
    # ε_r → 0 keeps the purifier's input: f∘φ and f∘φ* both become f (the no-purifier figures)
    tiny = rows[m, "reproject_eps=1e-06"]
    assert (tiny["clean_acc"], tiny["asr"]) == (r["no_purifier"]["clean_acc"], r["no_purifier"]["asr"])
  assert "Defence: reproject" in open(tmp_path / "wd" / "report.md").read()
  c.defense.reproject_eps = (0.0,)
  from jaxdiff.errors import ConfigError
  with pytest.raises(ConfigError, match=r"config\.defense\.reproject_eps = \(0\.0,\): .*radii in \(0, 1\]"):
    run_diff2(c, str(tmp_path / "wd"))


def test_reprojection_radius_labels():
  from jaxdiff.tasks.diff2.defenses import eps_label
  assert [eps_label(e) for e in (0.0, 8 / 255, 16 / 255, 0.05)] == ["none", "8/255", "16/255", "0.05"]


@pytest.mark.slow  # a DIFF2 run plus ANP (~2 min); run with -m slow
def test_anp_defense_rows_and_figure(tmp_path):
  from configs import diff2_digits_anp
  paths = _exports(tmp_path, 8, 1)
  c = _shrink(diff2_digits_anp.get_config(), paths)
  c.data.image_size, c.model.image_size = 8, 8
  c.diff2.update(sweep_t_bar=(), transfer_classifiers=())
  c.certify.n = 0
  c.attack.pgd_steps = 0
  c.defense.update(anp_lrs=(0.0, 0.5), anp_iterations=3, anp_batch=4, anp_threshold=0.999)
  r = run_diff2(c, str(tmp_path / "wd"))
  assert r["defense"] == "anp"
  rows = {row["setting"]: row for row in r["rows"]}
  assert list(rows) == ["none", "anp_lr=0", "anp_lr=0.5"] and all(row["model"] == "phi_star" for row in r["rows"])
  main = r["purification"]["ddpm"]["backdoored"]
  # rate 0: masks stay at 1, nothing is pruned, f∘φ* is unchanged
  assert rows["anp_lr=0"]["pruned_fraction"] == 0.0
  assert (rows["anp_lr=0"]["clean_acc"], rows["anp_lr=0"]["asr"]) == (main["clean_acc"], main["asr"])
  assert 0 < rows["anp_lr=0.5"]["pruned_fraction"] <= 1 and rows["anp_lr=0.5"]["adv_acc"] is None
  assert os.path.getsize(tmp_path / "wd" / "figure11.png") > 1000
  assert "channels pruned" in open(tmp_path / "wd" / "report.md").read()


def test_a_finished_export_is_reused_only_for_its_number_of_steps(tmp_path):
  import jax
  import ml_collections
  from jaxdiff.convert import export_model
  from jaxdiff.models import build_model, init_variables
  from jaxdiff.tasks.common import reuse_export
  cfg = ml_collections.ConfigDict(dict(name="unet", image_size=8, in_channels=1, base_channels=8, channel_mults=(1,),
                                       attention_resolutions=(), layers_per_block=1, norm_num_groups=4, dropout=0.0,
                                       dtype="float32"))
  d = str(tmp_path / "export")
  export_model(d, "unet", cfg, init_variables(build_model(cfg), cfg, jax.random.key(0)), {"fingerprint": {"a": 1},
                                                                                            "steps": 100})
  assert reuse_export(d, {"a": 1}, False, steps=100) is not None
  assert reuse_export(d, {"a": 1}, False) is not None
  assert reuse_export(d, {"a": 1}, False, steps=200) is None  # a longer fine-tune: fit resumes, then re-exports
