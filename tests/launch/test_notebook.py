"""notebooks/quickstart.ipynb executes top to bottom (tiny step counts), as a user would run it."""
import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXDIFF_QUICKSTART_STEPS", "4")
  monkeypatch.setenv("JAXDIFF_QUICKSTART_SAMPLE_STEPS", "2")  # the grid's 100 DDIM steps were most of the run
  monkeypatch.setenv("JAXDIFF_QUICKSTART_WORKDIR", str(tmp_path / "wd"))
  monkeypatch.setenv("JAXDIFF_REPO", ROOT)
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "accuracy after purification" in out and "certified predictions" in out
  assert os.listdir(tmp_path / "wd" / "samples")


@pytest.mark.slow  # ~60 s; tests/tasks/test_prepare.py runs the same pipeline in the fast tier
def test_cifar10_colab_notebook_executes_offline_on_tiny_files(tmp_path, monkeypatch):
  """notebooks/cifar10_colab.ipynb top to bottom with the design card's command at tiny size: a CIFAR-10 archive and
  a diffusers U-Net on disk, tiny classifier stages, downloads off."""
  import json

  from conftest import cifar_binary_archive, tiny_diffusers_unet
  archive, _ = cifar_binary_archive(str(tmp_path / "cifar-10-binary.tar.gz"), n=16)
  tiny_diffusers_unet(str(tmp_path / "unet"))
  stage = "train:configs/classifier_cifar.py:model.name=cnn,train.num_steps=2,train.batch_size=8,train.eval_every=2"
  overrides = {
      "data.path": archive, "purify.denoiser": str(tmp_path / "unet"), "diff2.surrogates": f"('{stage}',)",
      "classifier.path": stage + ",optim.lr=0.05", "diff2.trigger_steps": "2", "diff2.trigger_batch": "8",
      "train.num_steps": "2", "train.batch_size": "8", "train.log_every": "1", "eval.num_examples": "4",
      "eval.batch_size": "4", "eval.robust_examples": "4", "eval.stride": "1", "purify.samplers": "('ddim',)",
      "purify.num_steps": "2", "purify.one_step": "False", "attack.pgd_steps": "1", "certify.n": "8",
      "certify.n0": "4", "certify.num_images": "2", "certify.batch_size": "8"}
  monkeypatch.setenv("JAXDIFF_COLAB_OVERRIDES", json.dumps(overrides))
  monkeypatch.setenv("JAXDIFF_COLAB_WORKDIR", str(tmp_path / "wd"))
  monkeypatch.setenv("JAXDIFF_REPO", ROOT)
  monkeypatch.setenv("JAXDIFF_OFFLINE", "1")
  monkeypatch.setenv("JAXDIFF_PROGRESS", "0")
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "cifar10_colab.ipynb"), as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  tables = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
  assert len(images) == 2 and tables and "| ddim |" in tables[0] and "ASR table printed" in out
  assert json.load(open(tmp_path / "wd" / "report.json"))["sources"]["config.classifier.path"]["steps"] == 2
