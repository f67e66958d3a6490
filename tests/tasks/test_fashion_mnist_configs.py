"""The Fashion-MNIST experiment configs at tiny size on IDX files the tests write (issue #50): each runs its task and
writes the report fields of its digits twin. The models are a tiny DDPM and CNN trained once by the Fashion-MNIST
training configs (their train: route is tested in tests/data/test_fashion_mnist.py)."""
import json
import os

import pytest

from conftest import fashion_mnist_idx
from jaxdiff import tasks

pytestmark = pytest.mark.slow  # each trains tiny models and runs a task (~1–3 min); the slow tier


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
  """(IDX folder, tiny DDPM export, tiny CNN export) at 32×32×1."""
  from configs import classifier_fashion_mnist_cnn, ddpm_fashion_mnist
  root = tmp_path_factory.mktemp("fashion")
  idx = str(root / "idx")
  fashion_mnist_idx(idx, n_train=32, n_test=16)
  d = ddpm_fashion_mnist.get_config()
  d.data.path = idx
  d.model.update(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), layers_per_block=1,
                 norm_num_groups=4)
  d.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2, sample_every=0)
  tasks.run(d, str(root / "ddpm"))
  c = classifier_fashion_mnist_cnn.get_config()
  c.data.path = idx
  c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2, eval_every=2)
  tasks.run(c, str(root / "cnn"))
  return idx, str(root / "ddpm" / "export"), str(root / "cnn" / "export")


def _evaluation(c, fashion):
  idx, ddpm, cnn = fashion
  c.data.path = idx
  c.purify.update(denoiser=ddpm, num_steps=2)
  c.classifier.path = cnn
  c.eval.update(num_examples=4, batch_size=4, stride=1)
  return c


def test_purify_and_certify_fashion_mnist(fashion, tmp_path):
  from configs import certify_fashion_mnist, purify_fashion_mnist
  p = _evaluation(purify_fashion_mnist.get_config(), fashion)
  p.purify.update(samplers=("ddim", "ode"))
  p.purify.sampler_steps.ode = 2
  p.attack.update(pgd_steps=1)
  from jaxdiff.fingerprints import canonical  # the JSON form: tuples are lists there
  r = canonical(tasks.run(p, str(tmp_path / "purify")))
  assert r == json.load(open(tmp_path / "purify" / "report.json")) and r["num_examples"] == 4
  for sampler in ("ddim", "ode"):
    assert all(0 <= r["purification"][sampler][k] <= 1 for k in ("clean_acc", "pgd_acc"))
  c = _evaluation(certify_fashion_mnist.get_config(), fashion)
  c.certify.update(n=8, n0=4, batch_size=8, sigmas=(0.25, 0.5))
  tasks.run(c, str(tmp_path / "certify"))
  r = json.load(open(tmp_path / "certify" / "report.json"))
  assert set(r["certified_accuracy"]) == {"σ = 0.25", "σ = 0.5"}
  for wd in ("purify", "certify"):
    assert os.path.getsize(tmp_path / wd / "report.md") > 100


def test_diff2_targeted_fashion_mnist_reports_the_target_class_asr(fashion, tmp_path):
  from configs import diff2_fashion_mnist_targeted
  idx, ddpm, cnn = fashion
  d = _evaluation(diff2_fashion_mnist_targeted.get_config(), fashion)
  d.purify.update(samplers=("ddim",), one_step=False)
  d.diff2.update(surrogates=(cnn,), trigger_steps=2, trigger_batch=8)
  d.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2)
  d.attack.update(pgd_steps=1)
  d.eval.update(robust_examples=4)
  d.certify.update(n=8, n0=4, num_images=2, batch_size=8, sigmas=(0.5,))
  tasks.run(d, str(tmp_path / "diff2"))
  r = json.load(open(tmp_path / "diff2" / "report.json"))
  assert r["attack"] == "targeted"
  for m in ("benign", "backdoored"):
    assert {"asr", "clean_acc"} <= set(r["purification"]["ddim"][m])


def test_zoo_and_defend_zoo_fashion_mnist(fashion, tmp_path):
  from configs import defend_zoo_fashion_mnist, zoo_fashion_mnist
  idx, ddpm, cnn = fashion

  def shrink(c):
    c.data.path = idx
    c.model.init_from = ddpm
    for name in c.zoo.models:
      if c.zoo.models[name].steps:
        c.zoo.models[name].steps = 2
    c.zoo.update(fid_classifier=cnn, class_classifier=cnn, num_samples=4, clean_trigger_samples=2, fid_samples=4,
                 sample_batch=8, compare_samplers=(), sample_steps={"ddpm": 2, "ddim": 2, "dpm_solver++": 2,
                                                                   "sde": 2, "ode": 2})
    c.train.update(batch_size=8, log_every=1, checkpoint_every=1)
    return c
  z = shrink(zoo_fashion_mnist.get_config())
  tasks.run(z, str(tmp_path / "zoo"))
  assert sorted(os.listdir(tmp_path / "zoo" / "models")) == sorted(z.zoo.models)
  d = shrink(defend_zoo_fashion_mnist.get_config())
  d.defend.update(zoo_workdir=str(tmp_path / "zoo"), models=("clean_s0", "bd_box_corner"), fid_samples=4,
                  input_samples=4)
  d.scan.update(encoder_path=cnn, fid_classifier=cnn, classifier=cnn, iterations=2, batch=4, num_steps=2, elijah_iterations=2,
                finetune_samples=8, synthetic_steps=2, finetune_steps=2, finetune_batch=4, taylor_batch=2,
                terd_iterations=2, terd_refine_iterations=1, terd_batch=2, terd_steps=2, ufid_copies=2)
  r = tasks.run(d, str(tmp_path / "defend"))
  det = {x["model"]: x for x in r["detection"]}
  assert set(det) == {"clean_s0", "bd_box_corner"} and "input_detection" in det["bd_box_corner"]
  # 3 % of the 64-wide layers is one channel: Diff-Cleanse prunes at the paper's ratio
  rows = {(m["method"], m["loss"]): m for m in r["removal"]}
  assert {("diff_cleanse", "loss_p"), ("diff_pruning", "loss_p"), ("finetune", "loss_p"),
          ("diff_cleanse", "unlearn")} <= set(rows)
  assert all(m["outcome"] in ("removed", "target", "collapsed") for m in r["removal"])


def test_diff2_detect_fashion_mnist_judges_held_out_models(fashion, tmp_path):
  from configs import diff2_detect_fashion_mnist
  idx, ddpm, cnn = fashion
  c = _evaluation(diff2_detect_fashion_mnist.get_config(), fashion)
  c.diff2.update(surrogates=(cnn,), trigger_steps=2, trigger_batch=8)
  c.train.update(batch_size=8, log_every=1)
  c.defense.update(population_benign=1, population_untargeted=1, population_targeted=0, population_steps=2,
                   entropy_trials=3, entropy_inputs=4, entropy_steps=2, heldout_steps=(3,), heldout_alphas=())
  r = tasks.run(c, str(tmp_path / "detect"))
  assert [m["model"] for m in r["detection"]] == ["phi", "benign_0", "untargeted_0"]
  assert [m["setting"] for m in r["heldout"]] == ["steps3", "steps3"]
  assert set(r["summary"]["heldout"]) >= {"tpr", "fpr", "by_setting"}
