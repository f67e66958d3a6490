"""CLIP's image tower: parity with transformers' CLIPVisionModelWithProjection on random weights, loaded from its
safetensors and from the OpenAI / open_clip layout (a weights-only .pt); a pickle that would run code is refused."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from jaxdiff.convert import load_clip_vision  # noqa: E402
from jaxdiff.errors import ModelFileError  # noqa: E402
from jaxdiff.models.clip import CLIP_MEAN, CLIP_STD, CLIPVision, clip_preprocess  # noqa: E402


def _peer(width=128, layers=2):
  torch.manual_seed(0)
  cfg = transformers.CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                                      num_attention_heads=width // 64, image_size=32, patch_size=8, projection_dim=48,
                                      hidden_act="quick_gelu")
  model = transformers.CLIPVisionModelWithProjection(cfg).eval()
  with torch.no_grad():  # non-trivial norms and biases
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


def _embed(model, x):
  with torch.no_grad():
    return model(pixel_values=torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2))).image_embeds.numpy()


def test_parity_with_transformers_from_its_safetensors(tmp_path):
  peer = _peer()
  peer.save_pretrained(str(tmp_path / "clip"))
  cfg, params = load_clip_vision(str(tmp_path / "clip"))
  assert (cfg.width, cfg.layers, cfg.heads, cfg.patch_size, cfg.image_size, cfg.embed_dim) == (128, 2, 2, 8, 32, 48)
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  got = np.asarray(CLIPVision(cfg).apply({"params": params}, jnp.asarray(x)))
  want = _embed(peer, x)
  assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_openai_layout_from_a_weights_only_pt_matches(tmp_path):
  peer = _peer(width=64, layers=1)
  sd = {k: v.detach().clone() for k, v in peer.state_dict().items()}
  v, L = "vision_model.", "vision_model.encoder.layers.0."
  openai = {"visual.conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
            "visual.class_embedding": sd[v + "embeddings.class_embedding"],
            "visual.positional_embedding": sd[v + "embeddings.position_embedding.weight"],
            "visual.ln_pre.weight": sd[v + "pre_layrnorm.weight"], "visual.ln_pre.bias": sd[v + "pre_layrnorm.bias"],
            "visual.ln_post.weight": sd[v + "post_layernorm.weight"], "visual.ln_post.bias": sd[v + "post_layernorm.bias"],
            "visual.proj": sd["visual_projection.weight"].T.contiguous(),
            "logit_scale": torch.tensor(4.6)}  # text-side tensors are ignored
  R = "visual.transformer.resblocks.0."
  for w in ("weight", "bias"):
    openai[R + f"attn.in_proj_{w}"] = torch.cat([sd[L + f"self_attn.{n}_proj.{w}"] for n in "qkv"])
    openai[R + f"attn.out_proj.{w}"] = sd[L + f"self_attn.out_proj.{w}"]
    openai[R + f"ln_1.{w}"], openai[R + f"ln_2.{w}"] = sd[L + f"layer_norm1.{w}"], sd[L + f"layer_norm2.{w}"]
    openai[R + f"mlp.c_fc.{w}"], openai[R + f"mlp.c_proj.{w}"] = sd[L + f"mlp.fc1.{w}"], sd[L + f"mlp.fc2.{w}"]
  torch.save(openai, str(tmp_path / "ViT-B-32.pt"))
  cfg, params = load_clip_vision(str(tmp_path / "ViT-B-32.pt"))
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  got = np.asarray(CLIPVision(cfg).apply({"params": params}, jnp.asarray(x)))
  want = _embed(peer, x)
  assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


class _Trap:
  def __reduce__(self):
    return (os.system, ("touch /tmp/jaxdiff_clip_trap_ran",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
  if os.path.exists("/tmp/jaxdiff_clip_trap_ran"):
    os.remove("/tmp/jaxdiff_clip_trap_ran")
  import pickle
  with open(tmp_path / "evil.pt", "wb") as f:
    pickle.dump({"visual.proj": _Trap()}, f)
  with pytest.raises(ModelFileError, match="weights-only loader"):
    load_clip_vision(str(tmp_path / "evil.pt"))
  assert not os.path.exists("/tmp/jaxdiff_clip_trap_ran")
  with pytest.raises(ModelFileError, match="not a CLIP image tower"):
    torch.save({"visual.ln_pre.weight": torch.ones(4)}, str(tmp_path / "other.pt"))
    load_clip_vision(str(tmp_path / "other.pt"))


def test_preprocess_grey_resize_and_normalise():
  x = jnp.full((2, 16, 16, 1), 0.25)
  y = clip_preprocess(x, 32)
  assert y.shape == (2, 32, 32, 3)
  want = (0.25 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
  np.testing.assert_allclose(np.asarray(y[0, 5, 7]), want, rtol=1e-5)
  g = jax.grad(lambda v: jnp.sum(clip_preprocess(v, 32)))(x)  # differentiable for BBTI
  assert float(jnp.min(jnp.abs(g))) > 0
