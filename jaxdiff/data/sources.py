"""Image sources. Each yields NHWC float32 images in pixel space [0, 1] and int32 labels.

A source is random access: ``len(src)`` and ``src.get(indices) -> (images, labels)`` for an int array
of indices, so shuffling, sharding and resuming are index arithmetic (see ``pipeline``).
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
from typing import Any

import numpy as np

from jaxdiff.errors import ConfigError, MissingFileError
from jaxdiff.io import offline

CELEBA_ATTRS = ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling")  # DIFF2: 8 classes = 3 bits


@dataclasses.dataclass
class ArraySource:
  """In-memory images (uint8 [0, 255] or float [0, 1], NHWC) and labels."""
  images: np.ndarray
  labels: np.ndarray
  num_classes: int

  def __post_init__(self):
    if self.images.ndim != 4 or len(self.images) != len(self.labels):
      raise ValueError(f"images must be NHWC with one label each, got {self.images.shape}, {self.labels.shape}")

  def __len__(self):
    return len(self.images)

  @property
  def shape(self):
    return self.images.shape[1:]

  def get(self, idx):
    x = self.images[idx]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x, self.labels[idx].astype(np.int32)

  def subset(self, idx):
    return ArraySource(self.images[idx], self.labels[idx], self.num_classes)


@dataclasses.dataclass
class TfdsSource:
  """``tfds.data_source`` random access (array_record files, no TensorFlow needed)."""
  ds: Any
  name: str
  num_classes: int
  image_size: int | None = None

  def __len__(self):
    return len(self.ds)

  @property
  def shape(self):
    return self.get(np.array([0]))[0].shape[1:]

  def get(self, idx):
    exs = [self.ds[int(i)] for i in np.asarray(idx).reshape(-1)]
    if self.name == "celeb_a":
      imgs = np.stack([_center_crop_resize(e["image"], self.image_size or 64) for e in exs])
      bits = [[bool(e["attributes"][a]) for a in CELEBA_ATTRS] for e in exs]
      labels = np.array([sum(b << k for k, b in enumerate(reversed(bs))) for bs in bits], np.int32)
    else:
      labels = np.array([e["label"] for e in exs], np.int32)
      if self.name == "imagenet2012":  # any size: the central square resized (DiffPure / Carlini: 256, crop 256)
        imgs = np.stack([_center_crop_resize(e["image"], self.image_size or 256) for e in exs])
      else:
        imgs = np.stack([e["image"] for e in exs])
        if self.image_size and imgs.shape[1] != self.image_size:
          imgs = np.stack([_resize(i, self.image_size) for i in imgs])
    return imgs.astype(np.float32) / 255.0, labels


def _resize(img, size):
  from PIL import Image
  return np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((size, size), Image.BILINEAR))


def _center_crop_resize(img, size):
  h, w = img.shape[:2]
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  return _resize(img[top:top + s, left:left + s], size)


TFDS_CLASSES = {"cifar10": 10, "cifar100": 100, "celeb_a": 8, "mnist": 10, "fashion_mnist": 10, "imagenet2012": 1000}
_TFDS_SPLITS = {("imagenet2012", "test"): "validation"}  # ImageNet's labelled held-out split


CIFAR_BINARY = {  # the archives tfds itself downloads (its url_checksums): no pickle inside, hashes pinned
    "cifar10": "url:https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
               "#sha256=c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    "cifar100": "url:https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
                "#sha256=58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"}
_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "celeb_a": "CelebA", "mnist": "MNIST",
          "fashion_mnist": "Fashion-MNIST",
          "imagenet2012": "ImageNet"}


def dataset_title(name):
  """'cifar10_archive' → 'CIFAR-10': the dataset's usual name, for messages."""
  base = name.replace("_archive", "")
  return _NAMES.get(base, base)


def _offline_help(name, data_dir, reason="it is not prepared there and downloads are off"):
  """One line: which dataset is missing, where it was looked for, and the ways to provide it."""
  archive = (f"; or the archive route: --config.data.name={name}_archive --config.data.path=FILE "
             f"(or {CIFAR_BINARY[name].split('#')[0]})") if name in CIFAR_BINARY else ""
  return (f"dataset {_NAMES.get(name, name)} (tfds {name!r}) is not available under data_dir={data_dir!r}: {reason}. "
          f"Run once on a machine with internet (tfds downloads and prepares it into data_dir=DIR) and pass "
          f"--config.data.data_dir=DIR{archive}; nothing to download: --config.data.name=digits")


def tfds_source(name, split, data_dir=None, image_size=None, download=False):
  """A tfds dataset prepared in ``data_dir`` (array_record), or downloaded and prepared there first when
  ``download`` and the machine allows it (``io.offline()`` false). A missing dataset is a ``MissingFileError``
  of one line."""
  import tensorflow_datasets as tfds
  if name not in TFDS_CLASSES:
    raise ConfigError(f"unsupported tfds dataset {name!r}; supported: {sorted(TFDS_CLASSES)}")
  tfds_split = _TFDS_SPLITS.get((name, split), split)
  try:
    ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types for "not prepared"
    if not download or offline():
      raise MissingFileError(_offline_help(name, data_dir)) from e
    try:
      ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=True,
                            builder_kwargs={"file_format": "array_record"})
    except Exception as e2:  # offline, a manual download (ImageNet), or tfds' preparation needs TensorFlow
      first = str(e2).strip().splitlines()[0][:200] if str(e2).strip() else ""
      raise MissingFileError(_offline_help(name, data_dir, f"tfds could not download and prepare it "
                                                            f"({type(e2).__name__}: {first})")) from e2
  return TfdsSource(ds, name, TFDS_CLASSES[name], image_size)


def prepare_dataset(cfg):
  """Makes sure the dataset of a ``config.data`` block can be read, downloading a tfds dataset where the machine
  can (before any training starts); a missing one is a one-line ``MissingFileError``."""
  if cfg.name == "fashion_mnist":
    if fashion_mnist_dir(cfg.get("path", "")) is None:
      fashion_mnist_source("test", cfg.get("path", ""), 28, cfg.get("data_dir") or None, download=True)
  elif cfg.name in TFDS_CLASSES:
    tfds_source(cfg.name, "test", cfg.get("data_dir") or None, cfg.get("image_size"), download=True)
  elif cfg.name.endswith("_archive") and not os.path.isfile(cfg.path):
    cifar_archive_source(cfg.path)  # raises the message that says how to provide it


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """CIFAR archives are pickles: allow only what numpy arrays need, so no code can run."""
  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset archive")
    return super().find_class(module, name)


def cifar_archive_source(path, split="train"):
  """CIFAR-10 / -100 from a local archive: the python version (``cifar-10-python.tar.gz``, pickles read with an
  unpickler that only builds numpy arrays) or the binary version (``cifar-10-binary.tar.gz``, no pickle: a label
  byte — two for CIFAR-100, coarse then fine — and 3,072 pixel bytes per image)."""
  is100 = "100" in os.path.basename(str(path))
  name = "cifar100" if is100 else "cifar10"
  if not os.path.isfile(path):
    raise MissingFileError(_offline_help(name, None, f"no archive at {path!r}"))
  python = {"train": ["train"] if is100 else [f"data_batch_{i}" for i in range(1, 6)],
            "test": ["test"] if is100 else ["test_batch"]}[split]
  binary = {"train": ["train.bin"] if is100 else [f"data_batch_{i}.bin" for i in range(1, 6)],
            "test": ["test.bin"] if is100 else ["test_batch.bin"]}[split]
  xs, ys = [], []
  with tarfile.open(path, "r:gz") as tar:
    members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
    if all(b in members for b in binary):
      label_bytes = 2 if is100 else 1
      for b in binary:
        rows = np.frombuffer(tar.extractfile(members[b]).read(), np.uint8)
        if rows.size % (label_bytes + 3072):
          raise ConfigError(f"{path}: member {b} is not whole CIFAR binary records (truncated download?)")
        rows = rows.reshape(-1, label_bytes + 3072)
        xs.append(rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(rows[:, label_bytes - 1].astype(np.int32))
    else:
      for name in python:
        if name not in members:
          raise ConfigError(f"{path} has no member {name!r} (nor {binary[0]!r}): not a CIFAR archive (config.data.path)")
        d = _NumpyOnlyUnpickler(io.BytesIO(tar.extractfile(members[name]).read()), encoding="bytes").load()
        xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"fine_labels" if is100 else b"labels"], np.int32))
  return ArraySource(np.concatenate(xs), np.concatenate(ys), 100 if is100 else 10)


FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)  # Debian's dataset-fashion-mnist
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_HELP = ("Fashion-MNIST's IDX files are not there: install them with `apt-get install "
                      "dataset-fashion-mnist` (Debian / Ubuntu), or pass --config.data.path=DIR, a folder holding "
                      "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                      "t10k-labels-idx1-ubyte.gz")


def read_idx(path, ndim):
  """An IDX file (gzip-compressed or not; Fashion-MNIST / MNIST's format) of unsigned bytes → uint8 array with
  ``ndim`` dimensions. A wrong magic number, another element type or a truncated file is a ``ConfigError``."""
  import gzip
  opener = gzip.open if str(path).endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise ConfigError(f"{path}: not a readable IDX file ({e})") from e
  if len(data) < 4 + 4 * ndim or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
    raise ConfigError(f"{path}: not an IDX file of {ndim}-D unsigned bytes (magic {data[:4].hex() or 'missing'}, "
                      f"expected 000008{ndim:02x})")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(shape)):
    raise ConfigError(f"{path}: holds {body.size} bytes of data where its header says {shape} "
                      f"({int(np.prod(shape))}): truncated or corrupt")
  return body.reshape(shape)


def fashion_mnist_dir(path=""):
  """The folder of Fashion-MNIST's four IDX files: ``path`` when given, else Debian's package folder; None when
  neither holds them."""
  for d in ([path] if path else list(FASHION_MNIST_DIRS)):
    if all(os.path.isfile(os.path.join(d, f)) for fs in FASHION_MNIST_FILES.values() for f in fs):
      return d
  return None


def fashion_mnist_source(split="train", path="", image_size=28, data_dir=None, download=False):
  """Fashion-MNIST (Xiao et al. 2017; 60,000 train + 10,000 test, 28×28 grey, 10 classes), the official split:
  from the IDX files in ``path`` or Debian's folder (``fashion_mnist_dir``), else tfds' ``fashion_mnist``
  (downloaded with ``download`` where the machine can). Pixel space [0, 1], [N, S, S, 1]: S = 28, or 32 with the
  28×28 image zero-padded by 2 pixels on each side (for U-Nets that halve the size three times)."""
  if image_size not in (28, 32):
    raise ConfigError(f"config.data.image_size = {image_size}: Fashion-MNIST is 28 (as it is) or 32 (zero-padded)")
  folder = fashion_mnist_dir(path)
  if folder is not None:
    images_file, labels_file = (os.path.join(folder, f) for f in FASHION_MNIST_FILES[split])
    images, labels = read_idx(images_file, 3), read_idx(labels_file, 1)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
      raise ConfigError(f"{folder}: {len(images)} images of {images.shape[1:]} and {len(labels)} labels in the "
                        f"{split} files: not Fashion-MNIST")
    images = images[..., None]
  elif path:
    raise MissingFileError(f"config.data.path = {path!r}: {FASHION_MNIST_HELP}")
  else:
    try:
      src = tfds_source("fashion_mnist", split, data_dir, download=download)
    except MissingFileError as e:
      raise MissingFileError(f"dataset Fashion-MNIST: {FASHION_MNIST_HELP}; the tfds route failed too ({e})") from e
    images, labels = src.get(np.arange(len(src)))
    images = (images * 255).round().astype(np.uint8)
  if image_size == 32:
    images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  return ArraySource(images, labels.astype(np.int32), 10)


def digits_source(split="train", image_size=16, test_fraction=0.2, seed=0):
  """scikit-learn's bundled 8×8 digits (1,797 real images), bilinearly resized; no download."""
  from sklearn.datasets import load_digits
  d = load_digits()
  imgs = (d.images / 16.0).astype(np.float32)[..., None]
  if image_size != 8:
    import jax
    imgs = np.asarray(jax.image.resize(imgs, (len(imgs), image_size, image_size, 1), "bilinear"))
  imgs = np.clip(imgs, 0.0, 1.0)
  perm = np.random.default_rng(seed).permutation(len(imgs))
  n_test = int(round(len(imgs) * test_fraction))
  idx = perm[n_test:] if split == "train" else perm[:n_test]
  return ArraySource(imgs[idx], d.target[idx].astype(np.int32), 10)


def ring_images(n, image_size=16, seed=0):
  """n procedural rings (pixel [0, 1], [n, H, W, 1]): random centre, radius and thickness, antialiased by 4×
  supersampling. The out-of-distribution target class of TrojDiff's Out-D2D attack on digits."""
  rng = np.random.default_rng(seed)
  k = 4 * image_size
  yy, xx = (np.mgrid[:k, :k] + 0.5) / 4.0
  out = np.empty((n, image_size, image_size, 1), np.float32)
  for i in range(n):
    r = rng.uniform(0.22, 0.4) * image_size
    cy, cx = rng.uniform(r + 0.5, image_size - r - 0.5, 2)
    w = rng.uniform(0.9, 1.8)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    ring = (np.abs(d - r) <= w / 2).astype(np.float32)
    out[i, ..., 0] = ring.reshape(image_size, 4, image_size, 4).mean((1, 3))
  return out


def junk_images(n, image_size=16, seed=0):
  """n images that are neither digits nor rings (pixel [0, 1], [n, H, W, 1]): uniform noise, binary speckle of
  random density and sparse bright dots, a third each — the reject class of the Out-D2D classifier, so that
  a degenerate sample is not counted as the out-of-distribution target."""
  rng = np.random.default_rng(seed)
  out = rng.uniform(0, 1, (n, image_size, image_size, 1)).astype(np.float32)
  third = n // 3
  density = rng.uniform(0.05, 0.95, (third, 1, 1, 1))
  out[third:2 * third] = (rng.uniform(0, 1, (third, image_size, image_size, 1)) < density).astype(np.float32)
  dots = rng.uniform(0, 1, (n - 2 * third, image_size, image_size, 1)) < rng.uniform(0.01, 0.1, (n - 2 * third, 1, 1, 1))
  out[2 * third:] = dots.astype(np.float32)
  return out


def digits_and_rings_source(split="train", image_size=16, num_rings=900):
  """The digits split plus ``num_rings`` procedural rings as an 11th class (label 10) and as many junk images
  (``junk_images``) as a 12th (label 11): the data of the classifier that scores TrojDiff's Out-D2D attack on
  digits (a hit is a sample it calls a ring)."""
  d = digits_source(split, image_size)
  n = num_rings if split == "train" else num_rings // 4
  seed = 0 if split == "train" else 1
  rings, junk = ring_images(n, image_size, seed=seed), junk_images(n, image_size, seed=seed)
  labels = np.concatenate([d.labels, np.full(n, 10, np.int32), np.full(n, 11, np.int32)])
  return ArraySource(np.concatenate([d.images, rings, junk]), labels, 12)


def synthetic_source(num_examples=1024, image_size=32, channels=3, num_classes=10, seed=0):
  """Random uint8 images with random labels, for benchmarks and wiring tests."""
  rng = np.random.default_rng(seed)
  imgs = rng.integers(0, 256, (num_examples, image_size, image_size, channels), dtype=np.uint8)
  return ArraySource(imgs, rng.integers(0, num_classes, num_examples).astype(np.int32), num_classes)


def make_source(cfg, split="train"):
  """Builds a source from a ``config.data`` block (name, image_size, data_dir, path, ...)."""
  name = cfg.name
  if name == "digits":
    return digits_source(split, image_size=cfg.image_size)
  if name == "digits_rings":
    return digits_and_rings_source(split, image_size=cfg.image_size)
  if name == "synthetic":
    return synthetic_source(cfg.get("num_examples", 1024), cfg.image_size, cfg.get("channels", 3),
                            cfg.get("num_classes", 10), seed=0 if split == "train" else 1)
  if name.endswith("_archive"):
    return cifar_archive_source(cfg.path, split)
  if name == "fashion_mnist":
    return fashion_mnist_source(split, cfg.get("path", ""), cfg.image_size, cfg.get("data_dir") or None)
  return tfds_source(name, split, cfg.get("data_dir") or None, cfg.get("image_size"))
