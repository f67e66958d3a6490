"""The scan task with a tiny random-weight U-Net: the pinned scan.json, the evidence sheet, and bad inputs
refused with one clear message before any work."""
import json
import os

import pytest

from conftest import tiny_exports
from jaxdiff.errors import ConfigError, ModelFileError
from jaxdiff.tasks.scan import run_scan


def _tiny(tmp_path):
  from configs import scan
  unet, cnn, _ = tiny_exports(tmp_path, 8, 1)
  c = scan.get_config()
  c.scan.update(model=unet, encoder_path=cnn, iterations=2, batch=4, num_steps=2, evidence_samples=3,
                elijah_iterations=2, samplers=("ddim",))
  return c


def test_scan_tiny_writes_the_verdict_and_the_evidence(tmp_path):
  c = _tiny(tmp_path)
  wd = tmp_path / "wd"
  os.makedirs(wd)
  r = run_scan(c, str(wd))
  saved = json.load(open(wd / "scan.json"))
  assert saved["backdoored"] == r["backdoored"] and isinstance(saved["backdoored"], bool)
  assert 0 < saved["mscr"] <= 1 and saved["trigger_png"] == "trigger.png"
  assert set(saved["elijah"]) >= {"uniformity", "total_variation", "loss"}
  assert set(saved["samplers"]) == {"ddim"} and "removal" not in saved
  for f in ("trigger.png", "evidence.png", "scan.md"):
    assert os.path.getsize(wd / f) > 100, f


def test_scan_refuses_bad_inputs(tmp_path):
  c = _tiny(tmp_path)
  c.scan.remove = True
  with pytest.raises(ConfigError, match="removal .* is not implemented yet"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.model = str(tmp_path / "nowhere")
  with pytest.raises(ConfigError, match=r"config\.scan\.model = .*nowhere.*: must name an existing diffusion model"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder = "clip"
  with pytest.raises(ConfigError, match=r"config\.scan\.encoder = 'clip': must be one of 'classifier', 'pixels'"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder_path = "assets:digits/cnn"  # 16×16 digits, the model makes 8×8 images
  with pytest.raises(ConfigError, match="classifies 16×16×1 images, but the model generates 8×8×1"):
    run_scan(c, str(tmp_path / "wd"))
  c = _tiny(tmp_path)
  c.scan.encoder_path = c.scan.model  # a U-Net where a classifier is needed
  with pytest.raises(ModelFileError, match="is a unet export, but a classifier is needed"):
    run_scan(c, str(tmp_path / "wd"))
