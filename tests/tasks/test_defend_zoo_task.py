"""The defend_zoo task end to end on a tiny random-weight zoo: the pinned report.json lists, the removal rows of
every method, Elijah's leave-one-out forest, the per-model cache, and bad inputs refused."""
import json
import os
import types

import numpy as np
import pytest

from conftest import copy_zoo, tiny_zoo_config
from jaxdiff.errors import ConfigError
from jaxdiff.tasks.defence import elijah_forest
from jaxdiff.tasks.defend_zoo import run_defend_zoo
from jaxdiff.tasks.generation import Judge, backdoor_of, specs


def _tiny(tiny_zoo, tmp_path):
  """defend_zoo over four models of the shared tiny zoo (conftest.tiny_zoo), read from a copy of its workdir."""
  from configs import defend_zoo_digits
  exports, built, _ = tiny_zoo
  cnn = exports[1]
  c = tiny_zoo_config(defend_zoo_digits.get_config(), exports)
  c.defend.update(models=("clean_a", "clean_b", "bd", "d2i"), remove_models=("bd",))
  c.scan.update(encoder_path=cnn, fid_classifier=cnn, iterations=2, batch=4, num_steps=2, elijah_iterations=2,
                samplers=("ddim",), remove_ratio=0.2, finetune_samples=8, synthetic_steps=2, finetune_steps=2,
                finetune_batch=4, taylor_batch=2, taylor_threshold=0.99, terd_iterations=2, terd_refine_iterations=1,
                terd_batch=2, terd_steps=2, ufid_copies=2)
  c.defend.update(zoo_workdir=copy_zoo(built, tmp_path / "zoo"), ratios=(0.3,), fid_samples=6, input_samples=4)
  return c


@pytest.mark.xdist_group("tiny_zoo")
@pytest.mark.slow  # the tiny zoo (built once per worker, ~105 s) and its defences: the slow tier (scripts/test.sh -m slow)
def test_defend_zoo_tiny_end_to_end(tiny_zoo, tmp_path, monkeypatch):
  c = _tiny(tiny_zoo, tmp_path)
  wd = tmp_path / "wd"
  fid_sizes, fid = [], Judge.fid
  monkeypatch.setattr(Judge, "fid", lambda self, x: fid_sizes.append(len(x)) or fid(self, x))
  r = run_defend_zoo(c, str(wd))
  assert fid_sizes and set(fid_sizes) == {6}  # the removal's FID: defend.fid_samples, not the zoo's 4
  saved = json.load(open(wd / "report.json"))
  assert saved["detection"] == r["detection"] and saved["removal"] == r["removal"]
  det = {d["model"]: d for d in saved["detection"]}
  assert set(det) == {"clean_a", "clean_b", "bd", "d2i"}
  for d in det.values():
    assert {"model", "backdoored_truth", "bbti_backdoored", "mscr", "elijah_backdoored"} <= set(d)
    assert d["backdoored_truth"] == (d["model"] in ("bd", "d2i")) and 0 < d["mscr"] <= 1
  assert "bbti_similarity_only" in det["bd"] and "bbti_similarity_only" not in det["clean_a"]
  assert 0 <= det["bd"]["inverted_asr"] <= 1
  for d in det.values():  # TERD on every model; the input detectors on the backdoored ones
    assert d["terd"]["backdoored"] == (d["terd"]["kl_mean"] > c.scan.terd_kl_threshold)
    assert set(d["seconds"]) == {"bbti", "elijah", "terd"}
    assert ("input_detection" in d) == d["backdoored_truth"]
  for m in ("terd", "ufid", "disdet"):
    rec = det["bd"]["input_detection"][m]
    assert 0 <= rec["auroc"] <= 1 and 0 <= rec["tpr"] <= 1 and rec["n"] == 4
  assert -1 <= det["bd"]["terd"]["trigger_cosine"] <= 1
  for d in det.values():  # the default BBTI start (scan.trigger_init = race) is recorded per sampler
    assert all(b["init_offset"] in (-1.0, -0.5, 0.0, 0.5, 1.0) for b in d["bbti"].values()), d["bbti"]
  # each inverted trigger's cosine to the real one, against numpy on the cached triggers
  bd_spec = dict(specs(c))["bd"]
  real = np.asarray(backdoor_of(c, bd_spec).trigger, np.float64).ravel()
  cached = json.load(open(wd / "models" / "bd" / "defend.json"))
  for k, field in (("bbti", "trigger"), ("elijah", "tau")):
    inv = np.asarray(cached[field], np.float64).ravel()
    want = inv @ real / np.linalg.norm(inv) / np.linalg.norm(real)
    assert det["bd"]["trigger_cosine"][k] == pytest.approx(want, abs=1e-5)
  assert "trigger_cosine" not in det["clean_a"] and "cos(r, real)" in open(wd / "report.md").read()
  assert {n: d["bbti_sampler"] for n, d in det.items()} == {"clean_a": "ddpm", "clean_b": "ddpm", "bd": "ddpm",
                                                            "d2i": "ddim+trojdiff0.6"}  # each model's own sampling
  assert det["d2i"]["bbti"]["ddim+trojdiff0.6"]["trojan_gamma"] == 0.6 and det["bd"]["bbti"]["ddpm"]["trojan_gamma"] == 0
  runs = {(m["model"], m["method"], m["loss"], m["ratio"]) for m in saved["removal"]}
  want = [("diff_cleanse", "loss_p", 0.2), ("diff_cleanse", "loss_c", 0.2), ("diff_cleanse", "unlearn", 0.2),
          ("diff_pruning", "loss_p", 0.2), ("diff_cleanse", "loss_p", 0.3), ("diff_pruning", "loss_p", 0.3),
          ("elijah", "elijah", 0.0), ("finetune", "loss_p", 0.0)]
  assert runs == {("bd", *k) for k in want}  # d2i: detection only (defend.remove_models = bd)
  for m in saved["removal"]:
    assert {"model", "method", "pruned_fraction", "asr_before", "asr_after", "fid_before", "fid_after"} <= set(m)
    assert m["target_mse_before"] >= 0 and m["target_mse_after"] >= 0  # bd's target is an image
    assert (0 < m["pruned_fraction"] <= m["ratio"] and m["max_layer_fraction"] <= m["ratio"]) or (
        m["method"] in ("elijah", "finetune") and m["pruned_fraction"] == 0)
    for when in ("before", "after"):  # the looser threshold counts every hit of the strict one
      assert m[f"asr_loose_{when}"] >= m[f"asr_{when}"] and 0 < m[f"collapse_{when}"] <= 1
      assert m[f"triggered_fid_{when}"] >= 0
    want_outcome = ("target" if m["asr_after"] >= 0.1 else "collapsed" if m["collapse_after"] >= c.scan.kappa_d
                    else "removed")
    assert m["outcome"] == want_outcome and m["outcome_text"]
  pictures = np.load(wd / "models" / "bd" / "removal_samples.npz")
  assert len(pictures.files) == 1 + len(want) and pictures["before"].shape[1:] == (8, 8, 1)
  assert saved["removal_png"] == "removal.png" and os.path.getsize(wd / "removal.png") > 100
  md = open(wd / "report.md").read()
  assert "| outcome |" in md and "TERD (model level)" in md and "UFID AUROC / TPR" in md and ", TERD " in md
  assert os.path.getsize(wd / "triggers.png") > 100 and "Detection ACC: BBTI" in open(wd / "report.md").read()
  # cached per model: a rerun computes nothing and reports the same
  stamp = os.path.getmtime(wd / "models" / "bd" / "defend.json")
  again = run_defend_zoo(c, str(wd))
  assert again["detection"] == r["detection"] and os.path.getmtime(wd / "models" / "bd" / "defend.json") == stamp
  # bad inputs
  c.defend.models = ("bd", "nope")
  with pytest.raises(ConfigError, match=r"config\.defend\.models = \('bd', 'nope'\): must list entries"):
    run_defend_zoo(c, str(wd))
  c.defend.models = ()
  c.defend.zoo_workdir = str(tmp_path / "nowhere")
  with pytest.raises(ConfigError, match="must be the workdir of a zoo run of this config"):
    run_defend_zoo(c, str(wd))


def test_elijah_forest_leave_one_out_separates_clear_features():
  rng = np.random.default_rng(0)
  rows = [{"elijah": {"uniformity": float(u), "total_variation": float(t)}, "backdoored_truth": b}
          for b in (False, True) for u, t in rng.normal(0.15 if not b else 0.02, 0.005, (6, 2))]
  assert elijah_forest(rows) == [r["backdoored_truth"] for r in rows]
  assert elijah_forest(rows[:3]) == [None, None, None]  # the others hold one class only


def test_reading_a_zoo_workdir_never_trains_into_it(tmp_path):
  from configs import defend_zoo_digits
  from jaxdiff.tasks.generation import out_classifier
  zoo = tmp_path / "zoo"
  zoo.mkdir()
  with pytest.raises(ConfigError, match="holds no Out-D2D classifier trained with these settings"):
    out_classifier(defend_zoo_digits.get_config(), str(zoo), train=False)
  assert not any(zoo.iterdir())


def test_target_mse_is_the_median_pixel_mse_to_an_image_target_and_none_for_a_class():
  target = np.zeros((4, 4, 1), np.float32)  # model space: pixel 0.5
  images = 0.5 + np.array([0.01, 0.1, 0.2, 0.3, 0.4], np.float32)[:, None, None, None] * np.ones((5, 4, 4, 1))
  image_target = types.SimpleNamespace(target=target)
  assert Judge.target_mse(image_target, images) == pytest.approx(0.2 ** 2, rel=1e-5)
  assert Judge.target_mse(types.SimpleNamespace(target=None), images) is None  # D2D: a class, no image


@pytest.mark.xdist_group("tiny_zoo")
@pytest.mark.slow  # the tiny zoo (built once per worker, ~105 s) and its defences: the slow tier (scripts/test.sh -m slow)
def test_the_papers_protocol_samples_each_model_its_own_way(tiny_zoo, tmp_path, monkeypatch):
  """defend.bbti_samplers = "model": BadDiffusion → DDPM from ε + r with κ 0.9; TrojDiff D2I → DDIM with TrojDiff's
  sampling at γ 0.6; In-/Out-D2D → the same at their γ with κ = defend.class_kappa (the paper's 0.75)."""
  from jaxdiff.tasks import defence
  c = _tiny(tiny_zoo, tmp_path)
  c.defend.update(models=("bd", "d2i", "in_d2d", "out_d2d"), remove=False, ablations=False)
  calls = {}

  def bbti(s, model, params, d, shape, encode, key, sampler, use_entropy=None, gamma=0.0):
    calls.setdefault(len(calls), (sampler, gamma, s.kappa))
    return {"backdoored": False, "mscr": 0.1, "history": [{}], "init_offset": 0.0, "confirm_mscr": None,
            "attempts": 1, "samples": np.zeros((4,) + shape, np.float32), "trigger": np.zeros(shape, np.float32)}
  monkeypatch.setattr(defence, "bbti", bbti)
  monkeypatch.setattr(defence, "elijah", lambda s, m, p, d, shape, key, sampler: (
      np.zeros(shape, np.float32), {"uniformity": 0.1, "total_variation": 0.1, "loss": 0.0, "sampler": sampler}, None))
  r = run_defend_zoo(c, str(tmp_path / "wd"))
  assert [d["model"] for d in r["detection"]] == ["bd", "d2i", "in_d2d", "out_d2d"]
  assert list(calls.values()) == [("ddpm", 0.0, 0.9), ("ddim", 0.6, 0.9), ("ddim", 0.6, 0.75), ("ddim", 0.1, 0.75)]
  assert [d["bbti_sampler"] for d in r["detection"]] == ["ddpm", "ddim+trojdiff0.6", "ddim+trojdiff0.6",
                                                         "ddim+trojdiff0.1"]


@pytest.mark.xdist_group("tiny_zoo")
@pytest.mark.slow  # the tiny zoo (built once per worker, ~105 s) and its defences: the slow tier (scripts/test.sh -m slow)
def test_a_trojdiff_model_is_repaired_with_its_trigger_read_in_trojdiffs_form(tiny_zoo, tmp_path, monkeypatch):
  """BBTI inverts d2i's trigger through TrojDiff's sampling (γ 0.6), so the Taylor scores and the unlearn loss
  read r as its μ (``pruning.triggered_input`` with γ 0.6), and the rows say so; Elijah's τ stays an ε + τ shift."""
  from jaxdiff.backdoor import pruning
  c = _tiny(tiny_zoo, tmp_path)
  c.defend.update(models=("d2i",), remove_models=(), ablations=False, ratios=())
  seen = {"scores": [], "losses": []}
  scores, losses = pruning.importance_scores, pruning.repair_loss
  monkeypatch.setattr(pruning, "importance_scores", lambda *a, gamma=0.0, **k: seen["scores"].append(gamma)
                      or scores(*a, gamma=gamma, **k))
  monkeypatch.setattr(pruning, "repair_loss", lambda schedule, loss="loss_p", gamma=0.0: seen["losses"].append(
      (loss, gamma)) or losses(schedule, loss, gamma))
  r = run_defend_zoo(c, str(tmp_path / "wd"))
  assert r["detection"][0]["bbti_sampler"] == "ddim+trojdiff0.6"
  assert seen["scores"] == [0.6]
  assert sorted(seen["losses"]) == [("loss_p", 0.6), ("loss_p", 0.6), ("loss_p", 0.6), ("unlearn", 0.6)]
  rows = {(m["method"], m["loss"]): m["trojan_gamma"] for m in r["removal"]}
  assert rows == {("diff_cleanse", "loss_p"): 0.6, ("diff_pruning", "loss_p"): 0.6, ("diff_cleanse", "unlearn"): 0.6,
                  ("elijah", "elijah"): 0.0, ("finetune", "loss_p"): 0.0}
  assert "unlearn (r as TrojDiff's μ, γ 0.6)" in open(tmp_path / "wd" / "report.md").read()
