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
