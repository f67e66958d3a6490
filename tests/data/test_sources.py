import io
import pickle
import tarfile

import numpy as np
import pytest

from conftest import cifar_archive, cifar_binary_archive
from jaxdiff import data


def test_digits_source_real_images_resized():
  tr, te = data.digits_source("train", 16), data.digits_source("test", 16)
  assert len(tr) + len(te) == 1797 and tr.shape == (16, 16, 1)
  x, y = tr.get(np.arange(10))
  assert x.dtype == np.float32 and y.dtype == np.int32
  assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
  assert set(np.unique(tr.labels)) == set(range(10))
  # The split is a partition: no test image appears in train.
  assert not set(map(bytes, te.images[:50])) & set(map(bytes, tr.images))


@pytest.mark.parametrize("is100", [False, True])
def test_cifar_archive_source(tmp_path, is100):
  path = tmp_path / ("cifar-100-python.tar.gz" if is100 else "cifar-10-python.tar.gz")
  truth = cifar_archive(path, is100=is100)
  tr = data.cifar_archive_source(str(path), "train")
  te = data.cifar_archive_source(str(path), "test")
  assert len(tr) == (12 if is100 else 60) and len(te) == 12 and tr.num_classes == (100 if is100 else 10)
  x, y = te.get(np.array([3]))
  raw, labels = truth["test" if is100 else "test_batch"]
  # CHW rows → NHWC pixels in [0, 1]
  np.testing.assert_allclose(x[0], raw[3].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0, rtol=1e-6)
  assert y[0] == labels[3]


@pytest.mark.parametrize("is100", [False, True])
def test_cifar_binary_archive_source(tmp_path, is100):
  """The binary archives (what tfds downloads; the CIFAR configs' url: default): label byte(s) + CHW pixels."""
  path, truth = cifar_binary_archive(str(tmp_path / f"cifar-{100 if is100 else 10}-binary.tar.gz"), is100=is100)
  tr, te = data.cifar_archive_source(path, "train"), data.cifar_archive_source(path, "test")
  assert len(tr) == (12 if is100 else 60) and len(te) == 12 and tr.num_classes == (100 if is100 else 10)
  raw, labels = truth["test.bin" if is100 else "test_batch.bin"]
  x, y = te.get(np.arange(12))
  np.testing.assert_allclose(x, raw.reshape(12, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(y, labels)  # CIFAR-100: the fine label (second byte)
  raw, labels = truth["data_batch_2.bin" if not is100 else "train.bin"]
  np.testing.assert_array_equal(tr.get(np.arange(12, 24) if not is100 else np.arange(12))[1], labels)


def test_truncated_binary_archive_is_refused(tmp_path):
  path, _ = cifar_binary_archive(str(tmp_path / "cifar-10-binary.tar.gz"))
  with tarfile.open(path) as tar:
    members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
  with tarfile.open(path, "w:gz") as tar:
    for m, blob in members:
      blob = blob[:-5] if m.name.endswith("test_batch.bin") else blob
      m.size = len(blob)
      tar.addfile(m, io.BytesIO(blob))
  from jaxdiff.errors import ConfigError
  with pytest.raises(ConfigError, match="not whole CIFAR binary"):
    data.cifar_archive_source(path, "test")


def test_tfds_dataset_is_downloaded_where_allowed_and_named_in_one_line_where_not(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds
  calls = []

  def fake_data_source(name, split, data_dir, download, builder_kwargs=None):
    calls.append(download)
    if not download:
      raise FileNotFoundError("not prepared")
    assert builder_kwargs == {"file_format": "array_record"}
    return [{"image": np.zeros((32, 32, 3), np.uint8), "label": 3}]

  monkeypatch.setattr(tfds, "data_source", fake_data_source)
  monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
  monkeypatch.setenv("JAXDIFF_OFFLINE", "0")
  src = data.tfds_source("cifar10", "train", str(tmp_path), download=True)
  assert calls == [False, True] and src.get(np.array([0]))[1][0] == 3
  with pytest.raises(FileNotFoundError, match="not available"):
    data.tfds_source("cifar10", "train", str(tmp_path))  # tasks read prepared data only: prepare_dataset fetches
  monkeypatch.setenv("JAXDIFF_OFFLINE", "1")
  calls.clear()
  with pytest.raises(FileNotFoundError) as e:
    data.tfds_source("cifar10", "train", str(tmp_path), download=True)
  assert calls == [False] and "\n" not in str(e.value) and "dataset CIFAR-10 (tfds 'cifar10')" in str(e.value)
  assert "downloads are off" in str(e.value) and "--config.data.name=cifar10_archive" in str(e.value)


class _Evil:
  def __reduce__(self):
    return (eval, ("1+1",))


def test_cifar_archive_refuses_code(tmp_path):
  path = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    blob = pickle.dumps({b"data": _Evil(), b"labels": []})
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    data.cifar_archive_source(str(path), "train")


def test_missing_datasets_explain_offline_route(tmp_path):
  with pytest.raises(FileNotFoundError, match="data_dir=DIR") as e:
    data.tfds_source("cifar10", "train", data_dir=str(tmp_path))
  assert "cifar10_archive" in str(e.value) and "digits" in str(e.value)
  with pytest.raises(FileNotFoundError, match="no archive"):
    data.cifar_archive_source(str(tmp_path / "cifar-10-python.tar.gz"))


def test_tfds_cifar10_and_celeba_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    src = data.tfds_source("cifar10", "train")
    x, y = src.get(np.array([0, 5]))
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int32 and np.all((0 <= y) & (y < 10))
    celeb = data.tfds_source("celeb_a", "test", image_size=64)
    x, y = celeb.get(np.arange(3))
    assert x.shape == (3, 64, 64, 3) and celeb.num_classes == 8
    raw = [celeb.ds[i]["attributes"] for i in range(3)]
    want = [4 * bool(a["Heavy_Makeup"]) + 2 * bool(a["Mouth_Slightly_Open"]) + bool(a["Smiling"]) for a in raw]
    np.testing.assert_array_equal(y, want)
    # ImageNet: images of any size, the central square resized; "test" reads the validation split.
    inet = data.tfds_source("imagenet2012", "test", image_size=24)
    x, y = inet.get(np.arange(3))
    assert x.shape == (3, 24, 24, 3) and inet.num_classes == 1000 and np.all((0 <= y) & (y < 1000))
    raw = inet.ds[1]["image"]
    h, w = raw.shape[:2]
    s = min(h, w)
    crop = raw[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    from PIL import Image
    want = np.asarray(Image.fromarray(crop).resize((24, 24), Image.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(x[1], want)


def test_synthetic_source_deterministic():
  a, b = data.synthetic_source(8, 32), data.synthetic_source(8, 32)
  np.testing.assert_array_equal(a.get(np.arange(8))[0], b.get(np.arange(8))[0])
