"""ViTs in timm's layout against timm itself on random weights: same logits, imported from safetensors or a
weights-only .pt, with Carlini et al.'s 32 → 224 resize inside the classifier."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

from conftest import trapped_pickle  # noqa: E402
from jaxdiff.convert import convert_timm_vit, load_model, load_timm_vit  # noqa: E402
from jaxdiff.errors import ModelFileError, NonFiniteError  # noqa: E402


def _peer(seed=0, **kw):
  torch.manual_seed(seed)
  if "name" in kw:
    model = timm.create_model(kw.pop("name"), pretrained=False, **kw)
  else:
    from timm.models.vision_transformer import VisionTransformer
    model = VisionTransformer(**kw)
  with torch.no_grad():  # timm zero-initialises the head and cls token: perturb so every tensor matters
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model.eval()


def _theirs(model, x_nhwc, size, mean=0.5, std=0.5):
  x = torch.from_numpy(np.asarray(x_nhwc).transpose(0, 3, 1, 2).copy())
  if x.shape[-1] != size:  # Carlini et al.: the 32 × 32 image upsampled to the ViT's 224
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
  with torch.no_grad():
    return model((x - mean) / std).numpy()


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_small_vit_matches_timm(tmp_path, suffix):
  peer = _peer(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=7)
  path = str(tmp_path / f"model{suffix}")
  if suffix == ".pt":
    torch.save(peer.state_dict(), path)
  else:
    safetensors_torch.save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, path)
  model, variables, cfg = load_timm_vit(path, image_size=32)
  assert (cfg.name, cfg.resolution, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.num_classes) == (
      "vit_base_patch16_224", 32, 8, 128, 2, 2, 7)
  x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
  assert _rel(model.apply(variables, x), _theirs(peer, x, 32)) < 1e-4
  # Any other input size is resized to the checkpoint's resolution, as torch's bilinear interpolate does.
  x16 = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  assert _rel(model.apply(variables, x16), _theirs(peer, x16, 32)) < 1e-4


def test_vit_b16_at_224_from_cifar_images_matches_timm(tmp_path):
  """The registry's ViT-B/16 (Carlini et al.'s CIFAR-10 classifier): 32 × 32 pixels in, resized to 224 inside."""
  peer = _peer(name="vit_base_patch16_224", num_classes=10)
  safetensors_torch.save_file({k: v.contiguous() for k, v in peer.state_dict().items()},
                              str(tmp_path / "model.safetensors"))
  out = convert_timm_vit(tmp_path / "model.safetensors", str(tmp_path / "vit_export"), image_size=32)
  model, variables, meta = load_model(out, kind="classifier")
  assert meta["model"]["name"] == "vit_base_patch16_224" and meta["model"]["resolution"] == 224
  x = jax.random.uniform(jax.random.key(2), (2, 32, 32, 3))
  ours = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  assert _rel(ours, _theirs(peer, x, 224)) < 1e-4


def test_bf16_vit_stays_close_and_bad_checkpoints_are_refused(tmp_path):
  peer = _peer(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=7)
  state = {k: v.contiguous() for k, v in peer.state_dict().items()}
  safetensors_torch.save_file(state, str(tmp_path / "model.safetensors"))
  model, variables, _ = load_timm_vit(tmp_path / "model.safetensors", dtype="bfloat16")
  x = jax.random.uniform(jax.random.key(3), (4, 32, 32, 3))
  assert model.apply(variables, x).dtype == jnp.float32
  assert _rel(model.apply(variables, x), _theirs(peer, x, 32)) < 5e-2
  # A tensor the plain ViT does not have, a missing one, a non-finite one, and a pickle that would run code.
  safetensors_torch.save_file({**state, "fc_norm.weight": torch.ones(128)}, str(tmp_path / "extra.safetensors"))
  with pytest.raises(ModelFileError, match="fc_norm"):
    load_timm_vit(tmp_path / "extra.safetensors")
  safetensors_torch.save_file({k: v for k, v in state.items() if k != "cls_token"},
                              str(tmp_path / "missing.safetensors"))
  with pytest.raises(ModelFileError, match="cls_token"):
    load_timm_vit(tmp_path / "missing.safetensors")
  bad = dict(state)
  bad["blocks.1.mlp.fc2.weight"] = bad["blocks.1.mlp.fc2.weight"].clone()
  bad["blocks.1.mlp.fc2.weight"][0, 0] = float("nan")
  safetensors_torch.save_file(bad, str(tmp_path / "nan.safetensors"))
  with pytest.raises(NonFiniteError, match="fc2"):
    load_timm_vit(tmp_path / "nan.safetensors")

  trapped_pickle(tmp_path / "trap.pt", "cls_token", tmp_path / "pwned")
  with pytest.raises(ModelFileError, match="weights-only"):
    load_timm_vit(tmp_path / "trap.pt")
  assert not (tmp_path / "pwned").exists()
