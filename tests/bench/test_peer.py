"""The PyTorch peers of the benchmarks compute jaxdiff's functions on the same weights (else a ratio means nothing)."""
import jax
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxdiff.bench.peer import torch_classifier  # noqa: E402
from jaxdiff.models import build_model, init_variables  # noqa: E402


@pytest.mark.parametrize("name,channels,size,extra", [("resnet18", 3, 16, dict(width=0.25)),
                                                      ("resnet50", 3, 8, dict(width=0.125)),
                                                      ("cnn", 1, 8, dict(widths=(4, 8)))])
def test_torch_classifier_twin_matches(name, channels, size, extra):
  cfg = ml_collections.ConfigDict(dict(name=name, image_size=size, in_channels=channels, num_classes=10, **extra))
  model = build_model(cfg)
  v = dict(init_variables(model, cfg, jax.random.key(0)))
  rng = np.random.default_rng(0)  # BatchNorm statistics away from (0, 1), so a swapped mean/var would show
  v["batch_stats"] = jax.tree_util.tree_map_with_path(
      lambda p, a: (a * (1 + rng.random(a.shape)) if p[-1].key == "var" else a + 0.1 * rng.standard_normal(a.shape)
                    ).astype(np.float32), v["batch_stats"])
  x = rng.random((3, size, size, channels)).astype(np.float32)
  ours = np.asarray(model.apply(v, x))
  with torch.no_grad():
    theirs = torch_classifier(name, v)(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-5
  with pytest.raises(ValueError, match="no torch twin"):
    torch_classifier("vit_small", v)


def test_torch_nchw_gives_torchattacks_fab_a_layout_it_can_view():
  """torchattacks' FAB ``.view``s input gradients, which keep the input's strides: a transposed NHWC view of a
  3-channel batch made it fail (H200 AutoAttack bench, 2026-11-29); ``torch_nchw`` gives a contiguous copy."""
  torchattacks = pytest.importorskip("torchattacks")
  from jaxdiff.bench.peer import torch_nchw
  x = np.random.default_rng(0).random((2, 8, 8, 3), np.float32)
  xt = torch_nchw(jax.numpy.asarray(x))
  assert xt.is_contiguous() and xt.dtype == torch.float32
  np.testing.assert_array_equal(xt.numpy(), x.transpose(0, 3, 1, 2))
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3))
  y = net(xt).argmax(1)
  fab = torchattacks.FAB(net.eval(), norm="Linf", eps=1e-4, steps=2, n_restarts=1, multi_targeted=True, n_classes=3,
                         seed=0)
  with pytest.raises(RuntimeError, match="view size is not compatible"):  # the layout the bench used to pass
    fab(torch.from_numpy(x.transpose(0, 3, 1, 2)), y)
  adv = fab(xt, y)
  assert adv.shape == xt.shape and float((adv - xt).abs().max()) <= 1e-4 + 1e-6
