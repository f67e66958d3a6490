"""The zoo task end to end with a tiny random-weight U-Net: the pinned layout (models/<name>/ with meta.json
["backdoor"], zoo.json rows), one model per attack, resumability per model, and bad entries refused."""
import json
import os

import pytest

from conftest import copy_zoo, tiny_zoo_config
from configs.default import zoo_entry
from jaxdiff.errors import ConfigError
from jaxdiff.tasks.zoo import run_zoo

PINNED = {"attack", "trigger", "target", "poison_rate"}


@pytest.mark.xdist_group("tiny_zoo")
@pytest.mark.slow  # the tiny zoo (built once per worker, ~105 s) and its defences: the slow tier (scripts/test.sh -m slow)
def test_zoo_tiny_end_to_end_layout_and_resume(tiny_zoo, tmp_path):
  from configs import zoo_digits
  exports, built, rows = tiny_zoo  # one run_zoo of tiny_zoo_config, shared with the defend_zoo test
  c = tiny_zoo_config(zoo_digits.get_config(), exports)
  wd = tmp_path / "wd"
  copy_zoo(built, wd)
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
  # a rerun (here in the copied workdir) trains and measures nothing; a longer run of one model retrains (resumes)
  # that model only
  stamp = {n: os.path.getmtime(wd / "models" / n / "params.safetensors") for n in ("bd", "villan")}
  evals = os.path.getmtime(wd / "models" / "villan" / "eval.json")
  assert run_zoo(c, str(wd)) == rows and os.path.getmtime(wd / "models" / "villan" / "eval.json") == evals
  assert os.path.getmtime(wd / "models" / "bd" / "params.safetensors") == stamp["bd"]
  c.zoo.models.bd.steps = 3
  c.zoo.models.d2i.target = "hat"  # another trigger target: the clean models' rows are measured again
  c.overwrite = True  # d2i itself is retrained under the new target (its checkpoint is refused otherwise)
  clean_eval = os.path.getmtime(wd / "models" / "clean_a" / "eval.json")
  again = run_zoo(c, str(wd))
  assert os.path.getmtime(wd / "models" / "clean_a" / "eval.json") > clean_eval
  assert os.path.getmtime(wd / "models" / "villan" / "params.safetensors") == stamp["villan"]
  assert os.path.getmtime(wd / "models" / "bd" / "params.safetensors") > stamp["bd"]
  assert json.load(open(wd / "models" / "bd" / "meta.json"))["steps"] == 3 and again[2]["steps"] == 3
  # zoo.only builds and measures a subset; a clean row keeps every zoo trigger (its cached row is reused)
  c.zoo.only = ("clean_b", "bd")
  sub = run_zoo(c, str(wd))
  assert sub == [again[1], again[2]] and json.load(open(wd / "zoo.json")) == sub
  assert set(sub[0]["asr_by_trigger"]) == {"bd", "villan", "d2i", "in_d2d", "out_d2d"}


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


def test_zoo_only_must_name_entries_of_the_zoo(tmp_path):
  from configs import zoo_digits
  c = zoo_digits.get_config()
  c.zoo.only = ("clean_s0", "clean_s9")
  with pytest.raises(ConfigError) as e:
    run_zoo(c, str(tmp_path / "wd"))
  assert "config.zoo.only" in str(e.value) and "must list entries of config.zoo.models" in str(e.value)
  assert not os.path.exists(tmp_path / "wd")


@pytest.mark.experiment  # the whole digits zoo: ~2.5 h on 2 CPU cores; JAXDIFF_ZOO_WORKDIR=W checks (and completes) W
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
