"""The ADM U-Net against the OpenAI code (guided-diffusion-sdk's UNetModel) on random weights: same outputs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
script_util = pytest.importorskip("guided_diffusion.script_util")

from conftest import trapped_pickle  # noqa: E402
from jaxdiff.convert import convert_openai_unet, load_openai_unet  # noqa: E402
from jaxdiff.errors import ModelFileError  # noqa: E402

# Tiny versions of the two public configurations: improved-diffusion CIFAR-10 (learned σ, legacy attention order,
# no scale-shift) and guided-diffusion ImageNet-256 uncond (scale-shift norm, res-block up/down, head channels,
# new attention order); and a class-conditional one.
CONFIGS = {
    "cifar_like": dict(image_size=16, num_channels=32, num_res_blocks=2, channel_mult="1,2", learn_sigma=True,
                       attention_resolutions="8", num_heads=2, dropout=0.3),
    "imagenet_like": dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1,2", learn_sigma=True,
                          attention_resolutions="8,4", num_head_channels=16, use_scale_shift_norm=True,
                          resblock_updown=True, use_new_attention_order=True),
    "class_cond": dict(image_size=8, num_channels=32, num_res_blocks=1, channel_mult="1,2", class_cond=True,
                       attention_resolutions="4", use_scale_shift_norm=True),
}


def _peer(kw, seed=0):
  torch.manual_seed(seed)
  model = script_util.create_model(**kw).eval()
  with torch.no_grad():  # the OpenAI code zero-initialises output convs: perturb so every branch matters
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_adm_unet_matches_openai_unet(name, tmp_path):
  kw = CONFIGS[name]
  peer = _peer(kw)
  torch.save(peer.state_dict(), tmp_path / "model.pt")
  model, params = load_openai_unet(tmp_path / "model.pt", **kw)
  rng = np.random.default_rng(0)
  s = kw["image_size"]
  x = rng.uniform(-1, 1, (2, s, s, 3)).astype(np.float32)
  t = np.array([3, 871])
  y = np.array([1, 7]) if kw.get("class_cond") else None
  ours = np.asarray(model.apply({"params": params}, x, t, y))
  with torch.no_grad():
    theirs = peer(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(t),
                  None if y is None else torch.from_numpy(y)).numpy().transpose(0, 2, 3, 1)
  assert ours.shape == (2, s, s, 6 if kw.get("learn_sigma") else 3)
  assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4
  if y is None:  # the samplers' ε: the first C channels of a learned-σ output
    from jaxdiff.models import eps_fn_of
    np.testing.assert_array_equal(np.asarray(eps_fn_of(model, params)(x, t)), ours[..., :3])
  # converted once to safetensors, read back without torch: the same network
  out = convert_openai_unet(tmp_path / "model.pt", str(tmp_path / "model.safetensors"), **kw)
  _, again = load_openai_unet(out, **kw)
  np.testing.assert_array_equal(np.asarray(model.apply({"params": again}, x, t, y)), ours)


def test_openai_checkpoint_with_other_arguments_or_a_trapped_pickle_is_refused(tmp_path):
  kw = CONFIGS["class_cond"]
  torch.save(_peer(kw).state_dict(), tmp_path / "model.pt")
  with pytest.raises(ModelFileError, match="create_model"):
    load_openai_unet(tmp_path / "model.pt", **{**kw, "num_res_blocks": 2})

  trapped_pickle(tmp_path / "trap.pt", "input_blocks.0.0.weight", tmp_path / "pwned")
  with pytest.raises(ModelFileError, match="weights-only"):
    load_openai_unet(tmp_path / "trap.pt", **kw)
  assert not (tmp_path / "pwned").exists()
