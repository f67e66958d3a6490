"""Inception-v3 (FID) against pytorch-fid's InceptionV3 on random weights and random images, through the real
import path: the torch state dict saved as a .pth, read back with the weights-only loader, converted."""
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # test extra


def _pytorch_fid(monkeypatch):
  """(pytorch-fid's InceptionV3 feature extractor, the Inception3 it wraps) with random weights: the latter's
  state dict has the layout of the real pt_inception-2015-12-05 file."""
  # (tests/conftest.py lets torchvision import beside the CPU torch build)
  fid_inception = pytest.importorskip("pytorch_fid.inception")  # test extra
  with monkeypatch.context() as m:  # fid_inception_v3() would download the FID weights: keep random ones
    m.setattr(fid_inception, "load_state_dict_from_url", lambda *a, **k: None)
    m.setattr(torch.nn.Module, "load_state_dict", lambda self, sd, *a, **k: None)
    torch.manual_seed(0)
    net = fid_inception.fid_inception_v3()
  with torch.no_grad():  # random BatchNorm statistics too, so no layer is close to the identity
    for mod in net.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.normal_(0, 0.1)
        mod.running_var.uniform_(0.5, 1.5)
        mod.weight.uniform_(0.5, 1.5)
        mod.bias.normal_(0, 0.1)
  monkeypatch.setattr(fid_inception, "fid_inception_v3", lambda: net)
  return fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval(), net


def test_parity_with_pytorch_fid(tmp_path, monkeypatch):
  from jaxdiff.convert import load_inception_features
  ref, net = _pytorch_fid(monkeypatch)
  path = str(tmp_path / "pt_inception.pth")
  torch.save(net.state_dict(), path)  # what pytorch-fid downloads: Inception3's names, fc included
  features = load_inception_features(path)
  assert os.path.isfile(tmp_path / "pt_inception.safetensors")  # converted once, beside the .pth
  x = np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.tensor(x).permute(0, 3, 1, 2))[0].reshape(3, -1).numpy()
  got = features(x)
  assert got.shape == (3, 2048)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _Evil:
  def __reduce__(self):
    return (os.system, ("touch pwned",))


def test_a_trapped_pickle_is_refused_without_running_code(tmp_path, monkeypatch):
  from jaxdiff.convert import load_inception_features
  from jaxdiff.errors import ModelFileError
  monkeypatch.chdir(tmp_path)
  path = tmp_path / "evil.pth"
  with open(path, "wb") as f:
    pickle.dump({"Conv2d_1a_3x3.conv.weight": _Evil()}, f)
  with pytest.raises(ModelFileError, match="weights-only"):
    load_inception_features(str(path))
  assert not (tmp_path / "pwned").exists()
