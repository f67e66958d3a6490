"""The zoo task end to end with a tiny random-weight U-Net: the pinned layout (models/<name>/ with meta.json
["backdoor"], zoo.json rows), one model per attack, resumability per model, and bad entries refused."""
import json
import os

import pytest

from conftest import tiny_exports
from configs.default import zoo_entry
from jaxdiff.errors import ConfigError
from jaxdiff.tasks.zoo import run_zoo

PINNED = {"attack", "trigger", "target", "poison_rate"}


def _tiny(tmp_path):
  from configs import zoo_digits
  unet, cnn, _ = tiny_exports(tmp_path, 8, 1)
  c = zoo_digits.get_config()
  c.data.image_size = 8
  c.model.update(image_size=8, init_from=unet)
  small = dict(steps=2, poison_rate=0.5, trigger_size=14)
  c.zoo.models = {
      "clean_a": zoo_entry("clean"), "clean_b": zoo_entry("clean", seed=1, steps=2),
      "bd": zoo_entry("baddiffusion", trigger="grey_box", target="corner", **small),
      "villan": zoo_entry("villandiffusion", trigger="stop_sign", target="hat", **small),
      "d2i": zoo_entry("trojdiff_d2i", target="shoe", **small),
      "in_d2d": zoo_entry("trojdiff_in_d2d", target_class=3, **small),
      "out_d2d": zoo_entry("trojdiff_out_d2d", trojan_trigger="patch", **small)}
  c.zoo.update(fid_classifier=cnn, class_classifier=cnn, num_samples=4, clean_trigger_samples=2, fid_samples=4,
               sample_batch=8, out_classifier_steps=3, compare_samplers=("dpm_solver++",),
               sample_steps={"ddpm": 3, "ddim": 3, "dpm_solver++": 3, "sde": 3, "ode": 3})
  c.train.update(batch_size=8, log_every=1, checkpoint_every=1)
  return c


def test_zoo_tiny_end_to_end_layout_and_resume(tmp_path):
  c = _tiny(tmp_path)
  wd = tmp_path / "wd"
  rows = run_zoo(c, str(wd))
  assert rows == json.load(open(wd / "zoo.json"))
  assert [r["name"] for r in rows] == ["clean_a", "clean_b", "bd", "d2i", "in_d2d", "out_d2d", "villan"]
  for r in rows:
    assert set(r) >= {"name", "backdoor", "asr", "fid"} and 0 <= r["asr"] <= 1 and r["fid"] >= 0
    meta = json.load(open(wd / "models" / r["name"] / "meta.json"))
    assert os.path.getsize(wd / "models" / r["name"] / "params.safetensors") > 1000
    assert meta["backdoor"] == r["backdoor"]
    if r["name"].startswith("clean"):
      assert meta["backdoor"] is None
      assert set(r["asr_by_trigger"]) == {"bd", "villan", "d2i", "in_d2d", "out_d2d"}  # every zoo trigger
    else:
      assert PINNED <= set(meta["backdoor"]) and set(r["asr_by_sampler"]) == {r["sampler"], "dpm_solver++"}
  attacks = {r["name"]: r["backdoor"]["attack"] for r in rows if r["backdoor"]}
  assert attacks == {"bd": "baddiffusion", "villan": "villandiffusion", "d2i": "trojdiff_d2i",
                     "in_d2d": "trojdiff_in_d2d", "out_d2d": "trojdiff_out_d2d"}
  assert {r["name"]: r["sampler"] for r in rows}["villan"] == "ddim"
  assert "clean_target_share" in rows[4] and os.path.exists(wd / "classifiers" / "out_d2d" / "meta.json")
  assert "| villan |" in open(wd / "zoo.md").read() and os.path.getsize(wd / "models" / "bd" / "samples.png") > 300
  # a rerun trains and measures nothing; a longer run of one model retrains (resumes) that model only
  stamp = {n: os.path.getmtime(wd / "models" / n / "params.safetensors") for n in ("bd", "villan")}
  evals = os.path.getmtime(wd / "models" / "villan" / "eval.json")
  assert run_zoo(c, str(wd)) == rows and os.path.getmtime(wd / "models" / "villan" / "eval.json") == evals
  c.zoo.models.bd.steps = 3
  c.zoo.models.d2i.target = "hat"  # another trigger target: the clean models' rows are measured again
  c.overwrite = True  # d2i itself is retrained under the new target (its checkpoint is refused otherwise)
  clean_eval = os.path.getmtime(wd / "models" / "clean_a" / "eval.json")
  again = run_zoo(c, str(wd))
  assert os.path.getmtime(wd / "models" / "clean_a" / "eval.json") > clean_eval
  assert os.path.getmtime(wd / "models" / "villan" / "params.safetensors") == stamp["villan"]
  assert os.path.getmtime(wd / "models" / "bd" / "params.safetensors") > stamp["bd"]
  assert json.load(open(wd / "models" / "bd" / "meta.json"))["steps"] == 3 and again[2]["steps"] == 3


@pytest.mark.parametrize("field,value,message", [
    ("attack", "badnets", "config.zoo.models.bd.attack = 'badnets'"),
    ("steps", 0, "config.zoo.models.bd.steps = 0: must be ≥ 1 for a backdoored model"),
    ("psi", 0.5, "config.zoo.models.bd.psi = 0.5: must be 1 except for villandiffusion"),
    ("sampler", "euler", "config.zoo.models.bd.sampler = 'euler'"),
    ("target", "dog", "config.zoo.models.bd.target = 'dog'"),
])
def test_bad_zoo_entries_are_refused_before_any_work(tmp_path, field, value, message):
  from configs import zoo_digits
  c = zoo_digits.get_config()
  c.zoo.models = {"bd": zoo_entry("baddiffusion", steps=5)}
  c.zoo.models.bd[field] = value
  with pytest.raises(ConfigError) as e:
    run_zoo(c, str(tmp_path / "wd"))
  assert message in str(e.value) and not os.path.exists(tmp_path / "wd")


@pytest.mark.slow  # the whole digits zoo: ~2.5 h on 2 CPU cores; JAXDIFF_ZOO_WORKDIR=W checks (and completes) W
def test_full_digits_zoo_meets_the_asr_bar(tmp_path):
  from configs import zoo_digits
  workdir = os.environ.get("JAXDIFF_ZOO_WORKDIR") or str(tmp_path / "zoo")
  rows = {r["name"]: r for r in run_zoo(zoo_digits.get_config(), workdir)}
  for name, r in rows.items():
    if r["backdoor"] is None:
      assert max(r["asr_by_trigger"].values()) <= 0.05, (name, r["asr_by_trigger"])
    else:
      assert r["asr"] >= 0.9, (name, r["asr_by_sampler"])
  for name in ("villan_stop_cat", "villan_box_hat"):  # VillanDiffusion fires under the ODE samplers ...
    assert min(rows[name]["asr_by_sampler"].values()) >= 0.9, rows[name]
  for name in ("bd_stop_hat", "bd_box_corner", "bd_stop_shoe"):  # ... where BadDiffusion does not
    assert rows[name]["asr_by_sampler"]["ddim"] <= 0.1 and rows[name]["asr_by_sampler"]["dpm_solver++"] <= 0.1
