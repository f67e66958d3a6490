"""The on-device crop + flip augmentation: every output is a crop of the zero-padded input, flipped or not."""
import jax
import numpy as np

from jaxdiff.data import random_crop_flip


def _matches(out, img, pad):
  padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
  h, w = img.shape[:2]
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      crop = padded[dy:dy + h, dx:dx + w]
      for flipped, cand in ((False, crop), (True, crop[:, ::-1])):
        if np.array_equal(out, cand):
          return dy, dx, flipped
  return None


def test_random_crop_flip_is_a_padded_crop_flipped_or_not():
  x = np.random.default_rng(0).uniform(0.1, 1, (64, 8, 8, 3)).astype(np.float32)  # no zeros: crops are unique
  out = np.asarray(random_crop_flip(x, jax.random.key(0), pad=2))
  assert out.shape == x.shape
  found = [_matches(o, i, 2) for o, i in zip(out, x)]
  assert all(f is not None for f in found)
  assert {f[2] for f in found} == {False, True} and len({f[:2] for f in found}) > 10  # both flips, many offsets
  np.testing.assert_array_equal(out, np.asarray(random_crop_flip(x, jax.random.key(0), pad=2)))  # pure in the key
  assert not np.array_equal(out, np.asarray(random_crop_flip(x, jax.random.key(1), pad=2)))


def test_classifier_loss_augments_only_when_asked():
  import ml_collections
  from jaxdiff.models import build_model, init_variables
  from jaxdiff.train import classifier_loss
  cfg = ml_collections.ConfigDict(dict(name="cnn", image_size=8, in_channels=1, num_classes=10, widths=(4,)))
  model = build_model(cfg)
  v = init_variables(model, cfg, jax.random.key(0))
  batch = {"image": np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype(np.float32),
           "label": np.arange(8) % 10}
  state = {k: x for k, x in v.items() if k != "params"}  # BatchNorm statistics
  plain = classifier_loss()(model.apply, v["params"], state, batch, jax.random.key(3))[0]
  same = classifier_loss(augment="")(model.apply, v["params"], state, batch, jax.random.key(4))[0]
  aug = classifier_loss(augment="crop_flip")(model.apply, v["params"], state, batch, jax.random.key(3))[0]
  assert float(plain) == float(same) and float(aug) != float(plain)


def test_augmentation_wraps_any_loss_outermost():
  """``train.augmented`` hands the wrapped loss (e.g. adversarial training's PGD) the augmented batch, and is the
  identity for augment=''; an unknown augmentation is refused."""
  import pytest

  from jaxdiff.train import augmented
  seen = []
  spy = lambda apply_fn, params, state, batch, key, frozen=None: seen.append(batch["image"]) or 0.0
  x = np.random.default_rng(1).uniform(0.1, 1, (4, 8, 8, 1)).astype(np.float32)
  key = jax.random.key(5)
  augmented(spy, "crop_flip")(None, None, {}, {"image": x, "label": np.zeros(4)}, key)
  np.testing.assert_array_equal(np.asarray(seen[0]), np.asarray(random_crop_flip(x, jax.random.split(key)[1])))
  assert augmented(spy, "") is spy
  with pytest.raises(ValueError, match="unknown augmentation"):
    augmented(spy, "mixup")
