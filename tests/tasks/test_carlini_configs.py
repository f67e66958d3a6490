"""Carlini et al.'s certification config end to end at tiny size: an OpenAI-layout ADM U-Net (learned σ) and a
timm ViT, both random-weight torch checkpoints converted with launch/convert.py, on a generated CIFAR-10 archive."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cifar_archive

torch = pytest.importorskip("torch")
script_util = pytest.importorskip("guided_diffusion.script_util")
pytest.importorskip("timm")

ADM = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
           attention_resolutions="16", dropout=0.3)


def _convert(*args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "convert.py"), *args], capture_output=True,
                       text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return out.returncode, out.stderr


def _checkpoints(tmp_path):
  torch.manual_seed(0)
  adm = script_util.create_model(**ADM)
  with torch.no_grad():
    for p in adm.parameters():
      p.add_(0.02 * torch.randn_like(p))
  adm.eval()  # dropout 0.3 off, as our export applies it
  torch.save(adm.state_dict(), tmp_path / "adm.pt")
  from timm.models.vision_transformer import VisionTransformer
  vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=1, num_heads=1, num_classes=10)
  torch.save(vit.state_dict(), tmp_path / "vit.pt")
  rc, err = _convert("--kind=openai", f"--src={tmp_path / 'adm.pt'}", f"--dst={tmp_path / 'adm'}",
                     f"--create_model={json.dumps(ADM)}")
  assert rc == 0, err
  rc, err = _convert("--kind=timm", f"--src={tmp_path / 'vit.pt'}", f"--dst={tmp_path / 'vit'}")
  assert rc == 0, err
  return adm, tmp_path / "adm", tmp_path / "vit"


def test_certify_cifar_carlini_runs_end_to_end(tmp_path):
  import importlib

  from jaxdiff import diffusion, tasks
  from jaxdiff.convert import load_model
  from jaxdiff.robust import denoising_timestep
  adm, adm_dir, vit_dir = _checkpoints(tmp_path)
  # The export denoises with the ε half of the OpenAI network's output.
  model, variables, meta = load_model(str(adm_dir), kind="unet")
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = adm(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.tensor([5, 900])).numpy().transpose(0, 2, 3, 1)
  from jaxdiff.models import eps_fn_of
  ours = np.asarray(eps_fn_of(model, variables["params"])(x, np.array([5.0, 900.0], np.float32)))
  assert meta["model"]["name"] == "adm" and ours.shape == (2, 32, 32, 3)
  assert np.linalg.norm(ours - theirs[..., :3]) / np.linalg.norm(theirs[..., :3]) < 1e-4

  cifar_archive(tmp_path / "cifar.tar.gz", n=12)
  c = importlib.import_module("configs.certify_cifar_carlini").get_config()
  assert (c.purify.diffusion.schedule, c.purify.diffusion.num_timesteps, c.certify.n) == ("cosine", 4000, 100_000)
  c.data.update(name="cifar10_archive", path=str(tmp_path / "cifar.tar.gz"))
  c.purify.denoiser, c.classifier.path = str(adm_dir), str(vit_dir)
  c.certify.update(sigmas=(0.5,), n=16, n0=4, batch_size=16)
  c.eval.update(num_examples=3, stride=4, batch_size=4)
  r = tasks.run(c, str(tmp_path / "wd"))
  assert r["num_examples"] == 3 and len(r["certified_accuracy"]["σ = 0.5"]) == len(c.certify.radii)
  t_star = r["t_star"]["0.5"]
  sched = diffusion.cosine_schedule(4000)
  assert t_star == denoising_timestep(sched, 0.5)
  assert abs(float(sched.alphas_cumprod[t_star]) - 1 / (1 + 4 * 0.5 ** 2)) < 2e-3  # ᾱ_t* = 1/(1 + 4σ²)
  rows = open(tmp_path / "wd" / "certify_sigma0.5.tsv").read().splitlines()
  assert len(rows) == 4  # header + the 3 images


def test_convert_refuses_bad_arguments(tmp_path):
  torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
  rc, err = _convert("--kind=openai", f"--src={tmp_path / 'bad.pt'}", f"--dst={tmp_path / 'out'}")
  assert rc == 2 and "--preset" in err
  rc, err = _convert("--kind=openai", f"--src={tmp_path / 'bad.pt'}", f"--dst={tmp_path / 'out'}",
                     '--create_model={"image_size": 32, "num_chanels": 8}')
  assert rc == 2 and "num_chanels" in err
  rc, err = _convert("--kind=openai", f"--src={tmp_path / 'bad.pt'}", f"--dst={tmp_path / 'out'}",
                     '--create_model={"image_size": 32')
  assert rc == 2 and "JSON object" in err
  rc, err = _convert("--kind=timm", f"--src={tmp_path / 'bad.pt'}", f"--dst={tmp_path / 'out'}")
  assert rc == 2 and "cls_token" in err and not os.path.exists(tmp_path / "out")


@pytest.fixture(scope="module")
def imagenet_models(tmp_path_factory):
  """A tiny learned-σ ADM (32 × 32) and a tiny timm ViT with 1,000 classes, converted to exports."""
  tmp = tmp_path_factory.mktemp("imagenet_models")
  torch.manual_seed(1)
  adm = script_util.create_model(**{**ADM, "dropout": 0.0}).eval()
  with torch.no_grad():
    for p in adm.parameters():
      p.add_(0.02 * torch.randn_like(p))
  torch.save(adm.state_dict(), tmp / "adm.pt")
  from timm.models.vision_transformer import VisionTransformer
  vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=1, num_classes=1000)
  torch.save(vit.state_dict(), tmp / "vit.pt")
  assert _convert("--kind=openai", f"--src={tmp / 'adm.pt'}", f"--dst={tmp / 'adm'}",
                  f"--create_model={json.dumps({**ADM, 'dropout': 0.0})}")[0] == 0
  assert _convert("--kind=timm", f"--src={tmp / 'vit.pt'}", f"--dst={tmp / 'vit'}", "--normalize=imagenet")[0] == 0
  return str(tmp / "adm"), str(tmp / "vit")


def _imagenet(name, models):
  import importlib
  c = importlib.import_module(f"configs.{name}").get_config()
  assert (c.data.name, c.data.image_size, c.data.num_classes) == ("imagenet2012", 256, 1000)
  c.data.image_size = 32  # the mock images, resized; the tiny models are 32 × 32
  c.purify.denoiser, c.classifier.path = models
  c.eval.update(num_examples=2, stride=1, batch_size=2)
  return c


@pytest.mark.parametrize("name", ["certify_imagenet_carlini", "purify_imagenet"])
def test_imagenet_configs_run_end_to_end_on_mock_imagenet(tmp_path, imagenet_models, name):
  tfds = pytest.importorskip("tensorflow_datasets")
  from jaxdiff import tasks
  c = _imagenet(name, imagenet_models)
  if name == "certify_imagenet_carlini":
    c.certify.update(sigmas=(0.5,), n=8, n0=4, batch_size=8)
  else:
    assert c.purify.ddpm_variance == "learned" and c.purify.t_bar == 150
    c.purify.update(num_steps=2)
    c.attack.update(pgd_steps=1, autoattack=False, eot=1)
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    r = tasks.run(c, str(tmp_path / "wd"))
  assert r["num_examples"] == 2
  if name == "purify_imagenet":
    assert set(r["purification"]) == {"ddpm", "sde"}
    assert all(0 <= r["purification"][s]["pgd_acc"] <= 1 for s in ("ddpm", "sde"))
  else:
    assert len(r["certified_accuracy"]["σ = 0.5"]) == len(c.certify.radii)


@pytest.mark.slow  # ~80 s of CPU compiles; the digits DIFF2 test runs the same pipeline in the fast tier
def test_diff2_imagenet_config_runs_end_to_end_on_mock_imagenet(tmp_path, imagenet_models):
  tfds = pytest.importorskip("tensorflow_datasets")
  from jaxdiff import tasks
  c = _imagenet("diff2_imagenet", imagenet_models)
  assert c.purify.ddpm_variance == "learned" and c.certify.n == 0
  c.purify.update(num_steps=2)
  c.diff2.update(surrogates=(imagenet_models[1],), trigger_steps=2, trigger_batch=4)
  c.train.update(num_steps=2, batch_size=4, log_every=1, checkpoint_every=1)
  c.attack.update(pgd_steps=1, eot=1)
  c.eval.update(robust_examples=2)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    r = tasks.run(c, str(tmp_path / "wd"))
  res = r["purification"]["ddpm"]
  assert {"benign", "backdoored"} <= set(res) and 0 <= res["backdoored"]["asr"] <= 1
