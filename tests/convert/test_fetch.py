"""hf: and url: references against servers on 127.0.0.1: safetensors fetched and loaded, pickles and hash
mismatches refused with one line and nothing executed, offline failures in seconds, the cache reused."""
import hashlib
import os
import time

import numpy as np
import pytest

from conftest import FakeHub, FileServer, tiny_diffusers_unet, trapped_pickle
from jaxdiff.convert import fetch, load_model, parse_reference, resolve_path
from jaxdiff.errors import ConfigError, MissingFileError, ModelFileError

pytest.importorskip("diffusers")


@pytest.fixture
def hub(fetch_env, monkeypatch):
  unet = tiny_diffusers_unet(str(fetch_env / "unet"), size=16, channels=3)
  trapped_pickle(str(fetch_env / "evil.bin"), "conv.weight", fetch_env / "EXECUTED")
  evil = open(fetch_env / "evil.bin", "rb").read()
  server = FakeHub({"org/ddpm-tiny": {**unet, "diffusion_pytorch_model.bin": b"never fetched", "README.md": b"card"},
                    "org/nested": {f"unet/{k}": v for k, v in unet.items()},
                    "org/pickle-only": {"config.json": unet["config.json"], "diffusion_pytorch_model.bin": evil}})
  monkeypatch.setenv("HF_ENDPOINT", server.url)
  yield server
  server.close()


def test_hub_reference_fetches_safetensors_and_loads_the_model(hub, fetch_env):
  path, prov = fetch("hf:org/ddpm-tiny", "config.purify.denoiser")
  assert sorted(os.listdir(path)) == ["config.json", "diffusion_pytorch_model.safetensors"]  # no pickle, no card
  assert not any("diffusion_pytorch_model.bin" in p for _, p in hub.requests)
  assert prov["repo"] == "org/ddpm-tiny" and len(prov["revision"]) == 40 and path.endswith(prov["revision"])
  model, variables, meta = load_model("hf:org/ddpm-tiny", kind="unet")  # the loaders take references too
  x = np.zeros((1, 16, 16, 3), np.float32)
  assert model.apply(variables, x, np.array([10.0])).shape == x.shape
  nested, _ = fetch("hf:org/nested/unet")
  assert nested.endswith("/unet") and os.path.isfile(os.path.join(nested, "diffusion_pytorch_model.safetensors"))
  # offline afterwards: the cached snapshot is used, nothing asked
  os.environ["HF_HUB_OFFLINE"] = "1"
  try:
    before = len(hub.requests)
    assert fetch("hf:org/ddpm-tiny")[0] == path and len(hub.requests) == before
  finally:
    del os.environ["HF_HUB_OFFLINE"]


def test_pickle_only_repository_is_refused_and_nothing_runs(hub, fetch_env):
  with pytest.raises(ModelFileError, match=r"holds only pickle weights \(diffusion_pytorch_model\.bin\)") as e:
    fetch("hf:org/pickle-only", "config.purify.denoiser")
  assert "\n" not in str(e.value) and not (fetch_env / "EXECUTED").exists()
  assert not any(p.endswith(".bin") for m, p in hub.requests if m == "GET" and "/resolve/" in p)


def test_unknown_repository_and_offline_hub_fail_fast_with_one_line(hub, fetch_env, monkeypatch):
  with pytest.raises(MissingFileError, match="no such repository") as e:
    fetch("hf:org/missing", "config.purify.denoiser")
  assert "\n" not in str(e.value)
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  t = time.time()
  with pytest.raises(MissingFileError, match=r"hub repository org/ddpm-tiny is not in the local Hugging Face cache and "
                                             r"downloads are off.*--config\.purify\.denoiser=DIR") as e:
    fetch("hf:org/ddpm-tiny", "config.purify.denoiser")
  assert time.time() - t < 5 and "\n" not in str(e.value)
  monkeypatch.delenv("HF_HUB_OFFLINE")
  monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port: refused at once
  with pytest.raises(MissingFileError, match="the hub cannot be reached"):
    fetch("hf:org/ddpm-tiny", "config.purify.denoiser")


@pytest.fixture
def files(fetch_env):
  data = {"weights.safetensors": b"0123456789" * 100, "other.bin": b"x"}
  server = FileServer(data)
  yield server, data
  server.close()


def test_url_reference_checks_the_pinned_hash_and_downloads_once(files, fetch_env):
  server, data = files
  good = hashlib.sha256(data["weights.safetensors"]).hexdigest()
  url = f"{server.url}/weights.safetensors"
  path, prov = fetch(f"url:{url}#sha256={good}", "config.scan.clip_weights")
  assert open(path, "rb").read() == data["weights.safetensors"] and prov == {
      "ref": f"url:{url}#sha256={good}", "url": url, "sha256": good, "pinned": True}
  assert resolve_path(f"url:{url}#sha256={good}") == path and len(server.requests) == 1  # cached
  bad = "0" * 64
  os.remove(path)
  with pytest.raises(ModelFileError, match=f"sha256 is {good}, not the pinned {bad}: refused") as e:
    fetch(f"url:{url}#sha256={bad}", "config.scan.clip_weights")
  assert "\n" not in str(e.value) and not os.path.exists(path)  # nothing kept
  assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]


def test_url_without_a_hash_trusts_the_first_download_only(files, fetch_env):
  server, data = files
  path, prov = fetch(f"url:{server.url}/weights.safetensors")
  assert not prov["pinned"] and open(path + ".sha256").read().strip() == prov["sha256"]
  with open(path, "ab") as f:  # the cached file changes behind our back
    f.write(b"tampered")
  with pytest.raises(ModelFileError, match="not the recorded \\(first download\\)"):
    fetch(f"url:{server.url}/weights.safetensors")


def test_url_offline_or_unreachable_says_how_to_provide_the_file(files, fetch_env, monkeypatch):
  server, _ = files
  with pytest.raises(MissingFileError, match=r"cannot download .*missing\.pt.*--config\.data\.path=FILE"):
    fetch(f"url:{server.url}/missing.pt", "config.data.path (CIFAR-10)")
  monkeypatch.setenv("JAXDIFF_OFFLINE", "1")
  with pytest.raises(MissingFileError, match="downloads are off"):
    fetch(f"url:{server.url}/weights.safetensors", "config.data.path")
  assert [p for _, p in server.requests] == ["missing.pt"]


@pytest.mark.parametrize("ref,message", [
    ("hf:just-a-name", "not a hub reference"), ("hf:a/b@", "not a hub reference"), ("hf:a/b/../c", "not a hub"),
    ("url:ftp://host/x", "not a download reference"), ("url:https://h/x#md5=00", "sha256=<64 hex digits>"),
    ("train:configs/x", "not a training reference"), ("train:configs/x.py:novalue", "field=value pairs")])
def test_malformed_references_are_config_errors(ref, message):
  with pytest.raises(ConfigError, match=message):
    parse_reference(ref)
  assert parse_reference("hf:o/n@v2/sub/dir").subfolder == "sub/dir"
