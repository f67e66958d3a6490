"""Numerical parity with diffusers' UNet2DModel on random-weight checkpoints, and refusal of pickles."""
import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # test extra; always installed by scripts/setup.sh
diffusers = pytest.importorskip("diffusers")

from jaxdiff.convert import load_diffusers_unet
from jaxdiff.models import count_params

CIFAR10 = dict(  # google/ddpm-cifar10-32's config.json
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32)
SMALL_GRAY = dict(
    sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
    down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
    norm_num_groups=8, attention_head_dim=8, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1)


def _save_random(cfg, path):
  torch.manual_seed(0)
  m = diffusers.UNet2DModel(**cfg).eval()
  with torch.no_grad():  # perturb every weight so no branch is a no-op at init
    for p in m.parameters():
      p.add_(0.05 * torch.randn_like(p))
  m.save_pretrained(path, safe_serialization=True)
  return m


@pytest.mark.parametrize("cfg", [CIFAR10, SMALL_GRAY], ids=["ddpm-cifar10", "small-gray"])
def test_parity_with_diffusers(cfg, tmp_path):
  ref_model = _save_random(cfg, tmp_path)
  model, params = load_diffusers_unet(str(tmp_path))
  assert count_params(params) == sum(p.numel() for p in ref_model.parameters())
  s, c = cfg["sample_size"], cfg["in_channels"]
  x = np.random.default_rng(0).standard_normal((2, c, s, s)).astype(np.float32)
  t = np.array([3.0, 740.0], np.float32)
  with torch.no_grad():
    ref = ref_model(torch.from_numpy(x), torch.from_numpy(t)).sample.numpy()
  out = np.asarray(model.apply({"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(t)))
  rel = np.linalg.norm(out.transpose(0, 3, 1, 2) - ref) / np.linalg.norm(ref)
  assert rel < 1e-4


@pytest.mark.parametrize("cfg", [CIFAR10, SMALL_GRAY], ids=["ddpm-cifar10", "small-gray"])
def test_diffusers_config_inverts_the_import(cfg):
  from jaxdiff.convert import config_from_diffusers, diffusers_config
  ours = config_from_diffusers(cfg)
  assert config_from_diffusers(diffusers_config(ours)) == ours
  assert all(diffusers_config(ours)[k] == v for k, v in cfg.items())


class _Evil:
  def __reduce__(self):
    return (open, (os.environ["JAXDIFF_PWNED"], "w"))


def test_pickle_checkpoint_refused_without_running_code(tmp_path, monkeypatch):
  marker = tmp_path / "pwned"
  monkeypatch.setenv("JAXDIFF_PWNED", str(marker))
  (tmp_path / "config.json").write_text("{}")
  with open(tmp_path / "diffusion_pytorch_model.bin", "wb") as f:
    pickle.dump({"conv_in.weight": _Evil()}, f)
  for path in (tmp_path, tmp_path / "diffusion_pytorch_model.bin"):
    with pytest.raises(ValueError, match="weights_only=True"):
      load_diffusers_unet(str(path))
  assert not marker.exists()


def test_missing_and_mismatched_checkpoints(tmp_path):
  with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
    load_diffusers_unet(str(tmp_path))
  _save_random(SMALL_GRAY, tmp_path)
  import json
  cfg = json.loads((tmp_path / "config.json").read_text())
  cfg["block_out_channels"] = [16, 16]
  (tmp_path / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="does not match|shape mismatch"):
    load_diffusers_unet(str(tmp_path))
  cfg["down_block_types"] = ["CrossAttnDownBlock2D", "DownBlock2D"]
  (tmp_path / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="not supported"):
    load_diffusers_unet(str(tmp_path))


CELEBAHQ = dict(  # google/ddpm-ema-celebahq-256's config.json (BadDiffusion's face model)
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32)


def test_celebahq_256_config_imports_every_tensor():
  """The 256×256 CelebA-HQ DDPM maps tensor for tensor onto our U-Net (shapes only: no 450 MB of weights)."""
  import jax
  from jaxdiff.convert.diffusers import config_from_diffusers, flax_path
  from jaxdiff.models import UNet
  with torch.device("meta"):
    ref = diffusers.UNet2DModel(**CELEBAHQ)
  cfg = config_from_diffusers(dict(CELEBAHQ, _class_name="UNet2DModel"))
  x = jax.ShapeDtypeStruct((1, 256, 256, 3), np.float32)
  template = jax.eval_shape(UNet(cfg).init, jax.random.key(0), x, jax.ShapeDtypeStruct((1,), np.float32))["params"]
  ours = {tuple(k.key for k in p): v.shape for p, v in jax.tree_util.tree_flatten_with_path(template)[0]}
  mapped = {}
  for key, t in ref.state_dict().items():
    path, leaf = flax_path(key)
    shape = tuple(t.shape)
    if leaf == "weight":
      shape = (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape[::-1]
      if path[-1] in ("to_q", "to_k", "to_v", "to_out_0") and len(shape) == 4:
        shape = shape[2:]
      leaf = "scale" if len(shape) == 1 else "kernel"
    mapped[path + (leaf,)] = shape
  assert mapped == ours
  assert count_params(template) == sum(t.numel() for t in ref.parameters())
