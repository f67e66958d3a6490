import os

# Tests run on CPU; the multi-device tests ask for 4 host devices (must be set before jax starts). The tests' tiny
# programs spend far longer in LLVM than running: compile them at the lowest backend optimisation level (the same
# HLO; measured: 15 % less wall time on the BadDiffusion and inversion tests) and with XLA:CPU's older elemental
# fusion emitters (a tiny U-Net's loss gradient compiles in 5.4–6.0 s instead of 7.0–8.0 s; the pruning and scan
# tests ran in 223 s instead of 250 s).
# XLA aborts on a flag it does not know, and newer jaxlibs drop old emitters: the controller checks the flag once in
# a child process (~2 s); the xdist workers inherit the result.
import subprocess  # noqa: E402
import sys  # noqa: E402


def _test_xla_flags():
  base = "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
  extra = f"{base} --xla_cpu_use_fusion_emitters=false"
  probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True,
                         env={**os.environ, "XLA_FLAGS": extra, "JAX_PLATFORMS": "cpu"})
  return extra if probe.returncode == 0 else base


if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = _test_xla_flags()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import types  # noqa: E402

RUNTIME_BOUND = {"xla_backend_optimization_level": 3}  # XLA's default, for ``jax.jit(compiler_options=...)``


def runtime_jit(fn, **kw):
  """``jax.jit`` at XLA's default backend optimisation, for the few test programs that run far longer than they
  compile (closed-form checks sampling thousands of images over 1,000 steps): the session's level 0 makes those
  3–4× slower (a 1,000-step DDPM chain on 2,048 8×8 images: 27 s at 0, 7 s at 3)."""
  import jax
  return jax.jit(fn, compiler_options=RUNTIME_BOUND, **kw)

# PyPI's torchvision wheel (a test extra, for pytorch-fid's InceptionV3) is built against the CUDA torch; beside
# the CPU build its C++ ops do not register and its fake-kernel registrations fail at import, which also breaks
# diffusers (it imports torchvision). The networks the tests use are plain torch.nn: skip the registrations.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `configs.*` importable as in launch/main.py
os.environ.setdefault("JAXDIFF_PROGRESS", "0")

# One persistent compilation cache for the session (the xdist workers inherit the controller's directory, and the
# launch/ subprocesses read JAXDIFF_COMPILATION_CACHE): the many tiny U-Nets the tests build compile once, not
# once per test, and nothing is written under the user's ~/.cache.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402


def _temporary_dir(prefix):
  """A temporary folder removed when this process exits (the tests leave nothing in /tmp)."""
  path = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


if "JAXDIFF_COMPILATION_CACHE" not in os.environ:  # the xdist controller makes it; its workers inherit it
  os.environ["JAXDIFF_COMPILATION_CACHE"] = _temporary_dir("jaxdiff-xla-")
from jaxdiff.parallel import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


def tiny_ddpm_config(num_steps=6):
  """configs/ddpm_digits.py shrunk for tests (8×8 digits, 8-channel U-Net)."""
  from configs import ddpm_digits
  c = ddpm_digits.get_config()
  c.data.image_size = 8
  c.model.update(image_size=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                 norm_num_groups=4)
  c.train.update(num_steps=num_steps, batch_size=16, log_every=2, checkpoint_every=2, sample_every=0,
                 num_samples=4, sample_steps=3)
  return c


_TINY_EXPORTS = {}  # (size, channels) -> folder of this process's master copies


def tiny_exports(tmp, size, channels):
  """Random-weight exports in tmp: [U-Net, CNN 0, CNN 1] paths (size×size×channels images). Built once per
  process and shape (fixed seeds), then copied: initialising the U-Net is the slow part."""
  key = (size, channels)
  if key not in _TINY_EXPORTS:
    master = _temporary_dir(f"jaxdiff-tiny-{size}x{channels}-")
    _build_tiny_exports(master, size, channels)
    _TINY_EXPORTS[key] = master
  paths = []
  for name in ("unet", "cnn0", "cnn1"):
    shutil.copytree(os.path.join(_TINY_EXPORTS[key], name), str(tmp / name), dirs_exist_ok=True)
    paths.append(str(tmp / name))
  return paths


def _build_tiny_exports(folder, size, channels):
  import jax
  import ml_collections
  from jaxdiff.models import build_model, init_variables
  from jaxdiff.convert import export_model
  ucfg = ml_collections.ConfigDict(dict(
      name="unet", image_size=size, in_channels=channels, base_channels=8, channel_mults=(1, 2),
      attention_resolutions=(size // 2,), layers_per_block=1, norm_num_groups=4, dropout=0.0, dtype="float32"))
  unet = build_model(ucfg)
  export_model(os.path.join(folder, "unet"), "unet", ucfg, init_variables(unet, ucfg, jax.random.key(0)),
               {"diffusion": {"schedule": "linear", "num_timesteps": 1000}})
  for i in range(2):
    ccfg = ml_collections.ConfigDict(dict(name="cnn", image_size=size, in_channels=channels, num_classes=10,
                                          widths=(4,), dtype="float32"))
    clf = build_model(ccfg)
    export_model(os.path.join(folder, f"cnn{i}"), "classifier", ccfg, init_variables(clf, ccfg, jax.random.key(i)))


def cifar_archive(path, n=12, is100=False):
  """A CIFAR-10 (or -100) python tarball of random images at ``path``, as cs.toronto.edu ships it; returns
  {member: (uint8 rows [n, 3072], labels)}."""
  import io
  import pickle
  import tarfile

  import numpy as np
  rng = np.random.default_rng(0)
  names = ["train", "test"] if is100 else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  root = "cifar-100-python" if is100 else "cifar-10-batches-py"
  truth = {}
  with tarfile.open(path, "w:gz") as tar:
    for name in names:
      x = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
      y = rng.integers(0, 100 if is100 else 10, n).tolist()
      truth[name] = (x, y)
      d = {b"data": x, (b"fine_labels" if is100 else b"labels"): y}
      blob = pickle.dumps(d)
      info = tarfile.TarInfo(f"{root}/{name}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  return truth


def cifar_binary_archive(path, n=12, is100=False):
  """A cifar-10-binary.tar.gz (or cifar-100-binary) of random images at ``path``, laid out as the CIFAR homepage
  (and tfds) ship it: per image a label byte (CIFAR-100: coarse, fine) and 3,072 pixel bytes, channel-major.
  Returns (path, {member: (pixel rows [n, 3072], labels [n])})."""
  import io
  import tarfile

  import numpy as np
  rng = np.random.default_rng(1)
  names = ["train.bin", "test.bin"] if is100 else [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
  truth = {}
  with tarfile.open(path, "w:gz") as tar:
    for name in names:
      x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
      y = rng.integers(0, 100 if is100 else 10, (n, 2 if is100 else 1), dtype=np.uint8)
      rows = np.concatenate([y, x], 1)
      truth[name] = (x, y[:, -1].astype(np.int32))
      info = tarfile.TarInfo(f"{'cifar-100-binary' if is100 else 'cifar-10-batches-bin'}/{name}")
      info.size = rows.nbytes
      tar.addfile(info, io.BytesIO(rows.tobytes()))
  return path, truth


class _Trap:
  """Unpickling this runs ``open(marker, "w")``: a file appears if a loader executed the pickle's code."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (open, (self.marker, "w"))


def trapped_pickle(path, key, marker):
  """Writes a torch-style state dict at ``path`` whose tensor ``key`` is a pickle that creates ``marker`` when
  loaded by plain unpickling."""
  import pickle
  with open(path, "wb") as f:
    pickle.dump({key: _Trap(marker)}, f)


# A tiny random-weight zoo (8×8 digits, one model per attack), built once per test worker and shared by the zoo and
# defend_zoo tests. Both carry xdist_group("tiny_zoo") so that one worker builds it (scripts/test.sh runs xdist with
# --dist loadgroup); each test copies the workdir before it changes anything in it.


def tiny_zoo_config(c, exports):
  """Shrinks a config built on configs/zoo_digits (zoo_digits, defend_zoo_digits) to the tiny zoo. ``exports``:
  the [U-Net, CNN, CNN] paths of ``tiny_exports`` at 8×8×1."""
  from configs.default import zoo_entry
  unet, cnn, _ = exports
  c.data.image_size = 8
  c.model.update(image_size=8, init_from=unet)
  small = dict(steps=2, poison_rate=0.5, trigger_size=14)
  c.zoo.models = {
      "clean_a": zoo_entry("clean"), "clean_b": zoo_entry("clean", seed=1, steps=2),
      "bd": zoo_entry("baddiffusion", trigger="grey_box", target="corner", **small),
      "villan": zoo_entry("villandiffusion", trigger="stop_sign", target="hat", **small),
      "d2i": zoo_entry("trojdiff_d2i", target="shoe", **small),
      "in_d2d": zoo_entry("trojdiff_in_d2d", target_class=3, **small),
      "out_d2d": zoo_entry("trojdiff_out_d2d", trojan_trigger="patch", **small)}
  c.zoo.update(fid_classifier=cnn, class_classifier=cnn, num_samples=4, clean_trigger_samples=2, fid_samples=4,
               sample_batch=8, out_classifier_steps=3, compare_samplers=("dpm_solver++",),
               sample_steps={"ddpm": 3, "ddim": 3, "dpm_solver++": 3, "sde": 3, "ode": 3})
  c.train.update(batch_size=8, log_every=1, checkpoint_every=1)
  return c


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
  """(exports, zoo workdir, zoo rows) of the tiny zoo trained by the zoo task. Read it, or copy it (``copy_zoo``)
  before a run that may write into it."""
  from configs import zoo_digits
  from jaxdiff.tasks.zoo import run_zoo
  root = tmp_path_factory.mktemp("tiny_zoo")
  exports = tiny_exports(root, 8, 1)
  workdir = str(root / "zoo")
  rows = run_zoo(tiny_zoo_config(zoo_digits.get_config(), exports), workdir)
  return exports, workdir, rows


def copy_zoo(workdir, dest):
  """A copy of a zoo workdir (modification times kept: the zoo's resume checks compare them)."""
  shutil.copytree(workdir, dest, copy_function=shutil.copy2)
  return str(dest)


# Servers on 127.0.0.1 for the fetching tests: nothing leaves the machine.


class FakeHub:
  """A Hugging Face hub on 127.0.0.1 with the routes huggingface_hub's ``snapshot_download`` uses (repository
  info, tree listing, file resolve). ``repos``: {"owner/name": {path: bytes}}; ``requests``: what was asked.
  Point huggingface_hub at it with HF_ENDPOINT=``url``."""

  def __init__(self, repos):
    import hashlib
    import http.server
    import json
    import threading
    import urllib.parse
    self.repos, self.requests = repos, []
    hub = self

    def commit(files):
      return hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
          self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
          self.wfile.write(body)

      def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        hub.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo = "/".join(parts[2:4] if api else parts[:2])
        files = hub.repos.get(repo)
        if files is None:
          return self.reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        sha = commit(files)
        if api and len(parts) > 4 and parts[4] == "tree":
          listing = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                     for f, d in sorted(files.items())]
          return self.reply(200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
        if api:
          info = {"id": repo, "modelId": repo, "sha": sha, "siblings": [{"rfilename": f} for f in sorted(files)]}
          return self.reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        name = "/".join(parts[4:])
        if len(parts) < 5 or parts[2] != "resolve" or name not in files:
          return self.reply(404, b"", {"X-Error-Code": "EntryNotFound"})
        data = files[name]
        return self.reply(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                      "Content-Type": "application/octet-stream"})

      do_HEAD = do_GET

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def close(self):
    self.server.shutdown()
    self.server.server_close()


class FileServer(FakeHub):
  """Plain files on 127.0.0.1: GET ``url`` + "/" + name returns ``files[name]``."""

  def __init__(self, files):
    super().__init__({})
    self.files = files
    server = self

    class Handler(self.server.RequestHandlerClass):
      def do_GET(self):
        name = self.path.lstrip("/")
        server.requests.append((self.command, name))
        if name not in server.files:
          return self.reply(404)
        return self.reply(200, server.files[name])

      do_HEAD = do_GET

    self.server.RequestHandlerClass = Handler


@pytest.fixture
def fetch_env(tmp_path, monkeypatch):
  """Empty jaxdiff and Hugging Face caches in tmp_path, downloads allowed (whatever the machine sets)."""
  monkeypatch.setenv("JAXDIFF_CACHE", str(tmp_path / "jaxdiff-cache"))
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
  monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
  monkeypatch.delenv("JAXDIFF_OFFLINE", raising=False)
  return tmp_path


def tiny_diffusers_unet(folder, size=32, channels=3):
  """A random-weight diffusers UNet2DModel (8/16 channels) saved as safetensors + config.json in ``folder``;
  returns {file name: bytes} of the folder (to serve from a fake hub)."""
  import diffusers
  import torch
  torch.manual_seed(0)
  m = diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                            block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)
  m.save_pretrained(folder, safe_serialization=True)
  return {f: open(os.path.join(folder, f), "rb").read() for f in os.listdir(folder)}


def fashion_mnist_idx(folder, n_train=12, n_test=6):
  """Fashion-MNIST's four gzip IDX files with random 28×28 images in ``folder``; returns {split: (images, labels)}."""
  import gzip

  import numpy as np
  rng = np.random.default_rng(2)
  os.makedirs(folder, exist_ok=True)
  truth = {}
  for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    truth[split] = (x, y)
    with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
      f.write(b"\0\0\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in x.shape) + x.tobytes())
    with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
      f.write(b"\0\0\x08\x01" + n.to_bytes(4, "big") + y.tobytes())
  return truth
