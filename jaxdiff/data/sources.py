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


TFDS_CLASSES = {"cifar10": 10, "cifar100": 100, "celeb_a": 8, "mnist": 10, "imagenet2012": 1000}
_TFDS_SPLITS = {("imagenet2012", "test"): "validation"}  # ImageNet's labelled held-out split


def _offline_help(name, data_dir):
  return (
      f"dataset {name!r} is not available offline under data_dir={data_dir!r}. To provide it:\n"
      f"  * tfds route: on a machine with internet run\n"
      f"      python -c \"import tensorflow_datasets as tfds; "
      f"tfds.builder('{name}', data_dir='DIR', file_format='array_record').download_and_prepare()\"\n"
      f"    copy DIR to this machine and pass --config.data.data_dir=DIR;\n"
      f"  * archive route (CIFAR): download cifar-10-python.tar.gz / cifar-100-python.tar.gz from the "
      f"CIFAR homepage and pass --config.data.name={name}_archive --config.data.path=/path/to/archive;\n"
      f"  * nothing to download: --config.data.name=digits (scikit-learn's bundled digits).")


def tfds_source(name, split, data_dir=None, image_size=None):
  import tensorflow_datasets as tfds
  if name not in TFDS_CLASSES:
    raise ConfigError(f"unsupported tfds dataset {name!r}; supported: {sorted(TFDS_CLASSES)}")
  try:
    ds = tfds.data_source(name, split=_TFDS_SPLITS.get((name, split), split), data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types for "not prepared"
    raise MissingFileError(_offline_help(name, data_dir)) from e
  return TfdsSource(ds, name, TFDS_CLASSES[name], image_size)


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """CIFAR archives are pickles: allow only what numpy arrays need, so no code can run."""
  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset archive")
    return super().find_class(module, name)


def cifar_archive_source(path, split="train"):
  """Reads ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` from a local path."""
  if not os.path.isfile(path):
    raise MissingFileError(_offline_help("cifar10" if "100" not in str(path) else "cifar100", None)
                            + f"\n(no archive at {path!r})")
  is100 = "100" in os.path.basename(path)
  want = {"train": ["train"] if is100 else [f"data_batch_{i}" for i in range(1, 6)],
          "test": ["test"] if is100 else ["test_batch"]}[split]
  xs, ys = [], []
  with tarfile.open(path, "r:gz") as tar:
    members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
    for name in want:
      if name not in members:
        raise ConfigError(f"{path} has no member {name!r}: not a CIFAR python archive (config.data.path)")
      d = _NumpyOnlyUnpickler(io.BytesIO(tar.extractfile(members[name]).read()), encoding="bytes").load()
      xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
      ys.append(np.asarray(d[b"fine_labels" if is100 else b"labels"], np.int32))
  return ArraySource(np.concatenate(xs), np.concatenate(ys), 100 if is100 else 10)


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
  return tfds_source(name, split, cfg.get("data_dir") or None, cfg.get("image_size"))
