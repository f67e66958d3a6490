"""Fashion-MNIST from its IDX files (the Debian package's layout), written here: parsing, shapes, labels, the
official split, the padding to 32, and broken or missing files refused with one line."""
import gzip

import numpy as np
import pytest

from conftest import fashion_mnist_idx
from jaxdiff import data
from jaxdiff.errors import ConfigError, MissingFileError


def test_idx_files_are_read_with_the_official_split_and_padding(tmp_path):
  truth = fashion_mnist_idx(str(tmp_path))
  tr = data.fashion_mnist_source("train", str(tmp_path))
  te = data.fashion_mnist_source("test", str(tmp_path), image_size=32)
  assert (len(tr), len(te), tr.shape, te.shape, tr.num_classes) == (12, 6, (28, 28, 1), (32, 32, 1), 10)
  x, y = tr.get(np.arange(12))
  np.testing.assert_allclose(x[..., 0], truth["train"][0] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(y, truth["train"][1])
  x, y = te.get(np.arange(6))
  assert np.all(x[:, :2] == 0) and np.all(x[:, :, -2:] == 0)  # 2 black pixels on every side
  np.testing.assert_allclose(x[:, 2:30, 2:30, 0], truth["test"][0] / 255.0, rtol=1e-6)
  from ml_collections import ConfigDict
  cfg = ConfigDict(dict(name="fashion_mnist", path=str(tmp_path), image_size=32, data_dir=""))
  assert data.make_source(cfg, "test").shape == (32, 32, 1)


@pytest.mark.parametrize("damage,message", [
    ("truncate", "truncated or corrupt"), ("magic", "not an IDX file of 3-D unsigned bytes"),
    ("garbage", "not a readable IDX file")])
def test_broken_idx_files_are_refused_with_one_line(tmp_path, damage, message):
  fashion_mnist_idx(str(tmp_path))
  path = tmp_path / "train-images-idx3-ubyte.gz"
  raw = gzip.decompress(path.read_bytes())
  if damage == "truncate":
    path.write_bytes(gzip.compress(raw[:-100]))
  elif damage == "magic":
    path.write_bytes(gzip.compress(b"\0\0\x08\x01" + raw[4:]))
  else:
    path.write_bytes(b"not gzip at all")
  with pytest.raises(ConfigError, match=message) as e:
    data.fashion_mnist_source("train", str(tmp_path))
  assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_fashion_mnist_names_the_debian_package_and_the_flag(tmp_path):
  with pytest.raises(MissingFileError, match=r"apt-get install dataset-fashion-mnist.*--config\.data\.path=DIR") as e:
    data.fashion_mnist_source("train", str(tmp_path / "nowhere"))
  assert "\n" not in str(e.value)
  with pytest.raises(ConfigError, match="28 .* or 32"):
    data.fashion_mnist_source("train", str(tmp_path), image_size=16)


@pytest.mark.skipif(data.sources.fashion_mnist_dir() is None, reason="Debian's dataset-fashion-mnist is not installed")
def test_the_debian_package_holds_the_real_dataset():
  tr, te = data.fashion_mnist_source("train"), data.fashion_mnist_source("test")
  assert (len(tr), len(te)) == (60_000, 10_000)
  assert np.bincount(tr.labels).tolist() == [6000] * 10 and te.labels[:5].tolist() == [9, 2, 1, 1, 6]


@pytest.mark.slow  # ~17 s; the IDX tests above cover the data in the fast tier
def test_fashion_mnist_configs_train_at_tiny_size(tmp_path):
  """configs/{classifier,ddpm}_fashion_mnist.py on IDX files written here, shrunk: both export, padded input."""
  from configs import classifier_fashion_mnist, classifier_fashion_mnist_cnn, ddpm_fashion_mnist
  from jaxdiff import tasks
  from jaxdiff.convert import load_model
  fashion_mnist_idx(str(tmp_path / "idx"), n_train=16, n_test=8)
  for name, config in (("target", classifier_fashion_mnist), ("surrogate", classifier_fashion_mnist_cnn)):
    c = config.get_config()
    c.data.path = str(tmp_path / "idx")
    c.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2, eval_every=2)
    tasks.run(c, str(tmp_path / name))
    _, _, meta = load_model(str(tmp_path / name / "export"), kind="classifier")
    assert meta["steps"] == 2 and 0 <= meta["test_accuracy"] <= 1 and meta["model"]["image_size"] == 32
  d = ddpm_fashion_mnist.get_config()
  d.data.path = str(tmp_path / "idx")
  d.model.update(base_channels=8, channel_mults=(1, 2), attention_resolutions=(), layers_per_block=1,
                 norm_num_groups=4)
  d.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2, sample_every=0)
  tasks.run(d, str(tmp_path / "ddpm"))
  model, _, meta = load_model(str(tmp_path / "ddpm" / "export"), kind="unet")
  assert meta["model"]["image_size"] == 32 and meta["model"]["in_channels"] == 1


TINY_DDPM = ("train:configs/ddpm_fashion_mnist.py:model.base_channels=8,model.channel_mults=(1,2),"
             "model.attention_resolutions=(),model.layers_per_block=1,model.norm_num_groups=4,train.num_steps=2,"
             "train.batch_size=8,train.sample_every=0")
TINY_CNN = "train:configs/classifier_fashion_mnist_cnn.py:train.num_steps=2,train.batch_size=8,train.eval_every=2"


@pytest.mark.slow  # two train: stages and a task each (~2 min); the pinned report schemas on Fashion-MNIST
def test_diff2_and_baddiffusion_fashion_mnist_configs_write_the_digits_report_schema(tmp_path):
  """configs/{diff2,baddiffusion}_fashion_mnist.py at tiny size on IDX files written here, their models trained as
  train: stages: the report fields of their digits twins."""
  import json

  from configs import baddiffusion_fashion_mnist, diff2_fashion_mnist
  from jaxdiff import tasks
  fashion_mnist_idx(str(tmp_path / "idx"), n_train=32, n_test=16)
  b = baddiffusion_fashion_mnist.get_config()
  b.data.path = str(tmp_path / "idx")
  b.model.init_from = TINY_DDPM
  b.baddiffusion.update(fid_classifier=TINY_CNN, sample_steps=3, num_samples=4, fid_samples=4, sample_batch=8,
                        clip=(False,))
  b.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2)
  tasks.run(b, str(tmp_path / "bd"))
  r = json.load(open(tmp_path / "bd" / "report.json"))
  assert {"fid_features", "fid_reference", "mse_threshold"} <= set(r) and r["rows"]
  assert {"model", "sampler", "clip", "mse", "ssim", "asr", "fid"} <= set(r["rows"][0])
  d = diff2_fashion_mnist.get_config()
  d.data.path = str(tmp_path / "idx")
  d.purify.update(denoiser=TINY_DDPM, samplers=("ddim",), num_steps=2, one_step=False)
  d.classifier.path = TINY_CNN + ",optim.lr=0.05"
  d.diff2.update(surrogates=(TINY_CNN,), trigger_steps=2, trigger_batch=8)
  d.train.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2)
  d.attack.update(pgd_steps=1)
  d.eval.update(num_examples=4, batch_size=4, robust_examples=4, stride=1)
  d.certify.update(n=8, n0=4, num_images=2, batch_size=8, sigmas=(0.5,))
  tasks.run(d, str(tmp_path / "diff2"))
  r = json.load(open(tmp_path / "diff2" / "report.json"))
  for m in ("benign", "backdoored"):
    assert {"asr", "clean_acc"} <= set(r["purification"]["ddim"][m])
  assert r["sources"]["config.purify.denoiser"]["steps"] == 2


@pytest.mark.skipif(data.sources.fashion_mnist_dir() is None, reason="Debian's dataset-fashion-mnist is not installed")
def test_the_shipped_fashion_mnist_target_classifies_real_test_images():
  """jaxdiff/assets/fashion_mnist/resnet18_quarter: its recorded test accuracy (93.4 % on all 10,000) within sampling
  error on 1,000 real test images, padded to 32 as the config trains it."""
  from jaxdiff.convert import load_model
  from jaxdiff.metrics import accuracy
  model, variables, meta = load_model("assets:fashion_mnist/resnet18_quarter", kind="classifier")
  te = data.fashion_mnist_source("test", image_size=32)
  x, y = te.get(np.arange(0, 10_000, 10))
  acc = accuracy(lambda z: model.apply(variables, z, train=False), x, y, 250)
  assert meta["test_accuracy"] >= 0.92 and abs(acc - meta["test_accuracy"]) < 0.03, acc
