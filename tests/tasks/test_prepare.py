"""What runs before a task (``jaxdiff.tasks.prepare``): references found anywhere in a config, train: stages that
resume after a kill and are reused, and the design card's diff2_cifar command end to end against a fake hub and a
CIFAR-10 archive served on 127.0.0.1 (fetch → train classifiers → trigger → fine-tune → evaluate → certify)."""
import hashlib
import json
import os

import pytest

from conftest import FakeHub, FileServer, cifar_binary_archive, tiny_diffusers_unet
from jaxdiff import tasks
from jaxdiff.errors import ConfigError
from jaxdiff.tasks.prepare import prepare, references

TINY_CLASSIFIER = '''
from configs import classifier_digits


def get_config():
  c = classifier_digits.get_config()
  c.data.image_size = 8
  c.model.update(image_size=8, widths=(4,))
  c.train.update(num_steps=4, batch_size=16, log_every=1, checkpoint_every=1, eval_every=0)
  return c
'''


def _rows(folder):
  return [json.loads(l) for l in open(os.path.join(folder, "metrics.jsonl"))]


def test_references_are_found_in_nested_blocks_and_tuples():
  from configs import zoo_cifar
  c = zoo_cifar.get_config()
  found = {(p, i): v for p, i, v in references(c)}
  assert found[("model.init_from", None)] == "hf:google/ddpm-cifar10-32"
  assert found[("data.path", None)].startswith("url:https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz#sha256=")
  assert found[("zoo.class_classifier", None)] == "train:configs/classifier_cifar.py"
  from configs import diff2_cifar
  found = {(p, i): v for p, i, v in references(diff2_cifar.get_config())}
  assert found[("diff2.surrogates", 0)] == "train:configs/classifier_cifar.py"
  assert found[("classifier.path", None)] == "train:configs/classifier_cifar.py:model.name=resnet50"


def test_train_stage_is_resumed_after_a_kill_reused_and_retrained_under_new_settings(tmp_path):
  from configs import purify_digits
  cfg_file = tmp_path / "tiny_classifier.py"
  cfg_file.write_text(TINY_CLASSIFIER)
  c = purify_digits.get_config()
  wd = str(tmp_path / "wd")
  c.classifier.path = f"train:{cfg_file}:train.stop_at=2"  # killed after step 2 (stop_at is not fingerprinted)
  with pytest.raises(ConfigError, match="stopped before train.num_steps = 4 .*run the same command again"):
    prepare(c, wd, tasks.run)
  (folder,) = [os.path.join(wd, "models", d) for d in os.listdir(os.path.join(wd, "models"))]
  assert os.path.basename(folder).startswith("tiny_classifier-") and not os.path.exists(os.path.join(folder, "export"))
  c.classifier.path = f"train:{cfg_file}"
  out, sources = prepare(c, wd, tasks.run)
  assert out.classifier.path == os.path.join(folder, "export") and c.classifier.path == f"train:{cfg_file}"
  assert {"step": 2, "resumed_from": 2} in _rows(folder)
  assert [r["step"] for r in _rows(folder) if "loss" in r] == [1, 2, 3, 4]  # nothing trained twice
  prov = sources["config.classifier.path"]
  assert prov["steps"] == 4 and prov["config"] == str(cfg_file) and prov["fingerprint"] in folder
  assert json.load(open(os.path.join(wd, "sources.json")))["config.classifier.path"]["path"] == out.classifier.path
  stamp, rows = os.path.getmtime(os.path.join(folder, "export", "params.safetensors")), len(_rows(folder))
  again, _ = prepare(c, wd, tasks.run)  # the next run reuses the export
  assert again.classifier.path == out.classifier.path and len(_rows(folder)) == rows
  assert os.path.getmtime(os.path.join(folder, "export", "params.safetensors")) == stamp
  c.classifier.path = out.classifier.path  # a folder: nothing to record, and no stale record left for the report
  assert prepare(c, wd, tasks.run)[1] == {} and not os.path.exists(os.path.join(wd, "sources.json"))
  c.classifier.path = f"train:{cfg_file}:optim.lr=0.01"  # other settings: another stage, the first one kept
  other, _ = prepare(c, wd, tasks.run)
  assert other.classifier.path != out.classifier.path and os.path.isdir(out.classifier.path)
  c.classifier.path = f"train:{cfg_file}:optim.lrr=0.01"
  with pytest.raises(ConfigError, match="cannot set 'optim.lrr'"):
    prepare(c, wd, tasks.run)
  c.classifier.path = "train:configs/purify_digits.py"
  with pytest.raises(ConfigError, match="is a 'purification' config"):
    prepare(c, wd, tasks.run)


def test_diff2_cifar_command_fetches_trains_and_resumes_every_stage(tmp_path, fetch_env, monkeypatch):
  from configs import diff2_cifar
  archive = open(cifar_binary_archive(str(tmp_path / "cifar-10-binary.tar.gz"), n=16)[0], "rb").read()
  files = FileServer({"cifar-10-binary.tar.gz": archive})
  hub = FakeHub({"google/ddpm-cifar10-32": tiny_diffusers_unet(str(tmp_path / "unet"))})
  monkeypatch.setenv("HF_ENDPOINT", hub.url)
  tiny = "model.name=cnn,train.num_steps=2,train.batch_size=8,train.eval_every=2"
  c = diff2_cifar.get_config()
  c.data.path = f"url:{files.url}/cifar-10-binary.tar.gz#sha256={hashlib.sha256(archive).hexdigest()}"
  assert c.purify.denoiser == "hf:google/ddpm-cifar10-32"  # the design card's defaults, shrunk below
  c.classifier.path += "," + tiny + ",optim.lr=0.05"  # the tiny CNN replaces resnet50; not the surrogate
  c.diff2.update(trigger_steps=2, trigger_batch=8, sweep_t_bar=(), surrogates=(c.diff2.surrogates[0] + ":" + tiny +
                                                                             ",train.stop_at=1",))
  c.purify.update(samplers=("ddim",), num_steps=2, one_step=False)
  c.attack.update(pgd_steps=1, eot=1, autoattack=False)
  c.eval.update(num_examples=4, batch_size=4, robust_examples=4, stride=1)
  c.certify.update(n=8, n0=4, num_images=2, batch_size=8)
  c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=1)
  wd = str(tmp_path / "wd")
  try:
    with pytest.raises(ConfigError, match="stopped before"):  # 1. killed while training the surrogate
      tasks.run(c, wd)
    assert not os.path.exists(os.path.join(wd, "trigger.npy"))
    c.diff2.update(surrogates=(c.diff2.surrogates[0].replace(",train.stop_at=1", ""),), stop_after="trigger")
    tasks.run(c, wd)  # 2. the surrogate resumed, the target trained, the trigger made
    stages = {d: os.path.join(wd, "models", d) for d in os.listdir(os.path.join(wd, "models"))}
    assert len(stages) == 2 and all(os.path.isfile(os.path.join(f, "export", "meta.json")) for f in stages.values())
    assert any({"step": 1, "resumed_from": 1} in _rows(f) for f in stages.values())
    stamps = {f: os.path.getmtime(os.path.join(f, "export", "params.safetensors")) for f in stages.values()}
    trigger = os.path.getmtime(os.path.join(wd, "trigger.npy"))
    c.diff2.stop_after = "finetune"
    c.train.stop_at = 1
    tasks.run(c, wd)  # 3. killed in the fine-tune
    c.diff2.stop_after, c.train.stop_at = "", 0
    report = tasks.run(c, wd)  # 4. fine-tune resumed, evaluated, certified
  finally:
    hub.close()
    files.close()
  assert {"step": 1, "resumed_from": 1} in _rows(os.path.join(wd, "finetune"))
  assert os.path.getmtime(os.path.join(wd, "trigger.npy")) == trigger
  assert stamps == {f: os.path.getmtime(os.path.join(f, "export", "params.safetensors")) for f in stages.values()}
  assert set(report["purification"]) == {"ddim"} and report["certification"]["benign"]["clean"]
  saved = json.load(open(os.path.join(wd, "report.json")))
  src = saved["sources"]
  assert src["config.purify.denoiser"]["repo"] == "google/ddpm-cifar10-32" and len(src["config.purify.denoiser"]["revision"]) == 40
  assert src["config.data.path (CIFAR-10)"]["sha256"] == hashlib.sha256(archive).hexdigest()
  assert src["config.classifier.path"]["fingerprint"] and src["config.diff2.surrogates[0]"]["steps"] == 2
  assert "## Model sources" in open(os.path.join(wd, "report.md")).read()
  assert [p for _, p in files.requests] == ["cifar-10-binary.tar.gz"]  # downloaded once, then the cache
