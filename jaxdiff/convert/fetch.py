"""Model and data references that fetch: ``hf:OWNER/NAME[@REVISION][/SUBFOLDER]`` and ``url:https://…[#sha256=HEX]``.

Any config field that names a model folder or a file may hold a reference instead of a path (``jaxdiff.tasks.run``
resolves them before a task starts; ``resolve_path`` resolves one on its own):

* ``hf:`` — a Hugging Face hub repository, fetched with huggingface_hub's ``snapshot_download`` into the user's HF
  cache (``HF_HOME``), only ``*.json`` and ``*.safetensors`` files: a repository (or subfolder) whose weights are
  pickles only (``.bin``, ``.pt``, ``.ckpt``) is refused. ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are honoured.
* ``url:`` — one file, downloaded once into ``cache_dir()/url/`` and checked against ``#sha256=`` when given;
  without it the first download's hash is recorded beside the file and any later difference is refused. (An OpenAI
  checkpoint named like a public preset becomes an export folder: ``openai.export_public_checkpoint``.)

Offline (no network, ``HF_HUB_OFFLINE=1`` or ``JAXDIFF_OFFLINE=1``) a reference that is not in the cache fails in
seconds with one line (``MissingFileError``) naming what is missing and how to provide it. ``provenance`` says
where a resolved reference came from (hub revision, URL hash), for reports.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from jaxdiff.errors import ConfigError, MissingFileError, ModelFileError
from jaxdiff.io import offline
from jaxdiff.progress import progress

FETCHED = ("hf", "url")  # reference kinds this module resolves; "train:" is built by jaxdiff.tasks
REFERENCE_KINDS = FETCHED + ("train",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TIMEOUT_S = float(os.environ.get("JAXDIFF_FETCH_TIMEOUT", "10"))  # seconds to wait for a server's first answer


@dataclasses.dataclass(frozen=True)
class Reference:
  """A parsed reference. ``kind``: hf | url | train; ``target``: the repository, URL or config file; ``revision``
  and ``subfolder`` (hf); ``sha256`` (url); ``overrides`` (train: "a.b=1,c=x")."""
  kind: str
  target: str
  revision: str | None = None
  subfolder: str = ""
  sha256: str | None = None
  overrides: str = ""
  text: str = ""


def is_reference(value) -> bool:
  """True for a string of the form hf:…, url:… or train:… (a reference, not a path)."""
  return isinstance(value, str) and value.split(":", 1)[0] in REFERENCE_KINDS and ":" in value


def parse_reference(value: str) -> Reference:
  """'hf:google/ddpm-cifar10-32@main/unet' → Reference(kind='hf', ...). Raises ``ConfigError`` when malformed."""
  kind, _, rest = value.partition(":")
  if kind == "hf":
    # OWNER/NAME[@REVISION][/SUBFOLDER]; a revision holds no '/' (a branch, tag or commit)
    parts = rest.split("/")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    repo, _, rev = repo.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or "@" in rest and not rev or ".." in sub.split("/"):
      raise ConfigError(f"{value!r} is not a hub reference: write hf:OWNER/NAME[@REVISION][/SUBFOLDER]")
    rev = rev or None
    return Reference("hf", repo, revision=rev, subfolder=sub.strip("/"), text=value)
  if kind == "url":
    url, _, frag = rest.partition("#")
    scheme = urllib.parse.urlparse(url).scheme
    sha = None
    if frag:
      if not re.fullmatch(r"sha256=[0-9a-fA-F]{64}", frag):
        raise ConfigError(f"{value!r}: the part after '#' must be sha256=<64 hex digits>")
      sha = frag.split("=", 1)[1].lower()
    if scheme not in ("https", "http") or not urllib.parse.urlparse(url).netloc:
      raise ConfigError(f"{value!r} is not a download reference: write url:https://HOST/PATH[#sha256=HEX]")
    return Reference("url", url, sha256=sha, text=value)
  if kind == "train":
    config, _, overrides = rest.partition(":")
    if not config.endswith(".py"):
      raise ConfigError(f"{value!r} is not a training reference: write train:configs/NAME.py[:field=value,...]")
    for item in split_overrides(overrides):
      if "=" not in item:
        raise ConfigError(f"{value!r}: overrides are field=value pairs separated by commas ({item!r})")
    return Reference("train", config, overrides=overrides, text=value)
  raise ConfigError(f"{value!r}: unknown reference kind {kind!r} (hf:, url: or train:)")


def split_overrides(text):
  """'a.b=1,c=(1,2),d=x' → ['a.b=1', 'c=(1,2)', 'd=x']: commas inside () or [] belong to the value."""
  return [item for item in re.split(r",(?![^()\[\]]*[)\]])", text) if item]


def cache_dir():
  """$JAXDIFF_CACHE, else $XDG_CACHE_HOME/jaxdiff, else ~/.cache/jaxdiff."""
  return os.environ.get("JAXDIFF_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "jaxdiff")


def fetch(value: str, what: str = "model"):
  """(local path, provenance dict) of an hf: or url: reference; ``what`` names the config field in messages."""
  ref = parse_reference(value)
  if ref.kind == "hf":
    return fetch_hf(ref, what)
  if ref.kind == "url":
    return fetch_url(ref, what)
  raise ConfigError(f"{what} = {value!r}: train: references are trained by the pipeline (launch/main.py or "
                    "jaxdiff.tasks.run), not fetched")


def _field(what):
  """'config.data.path (CIFAR-10)' → 'config.data.path': the flag a message tells the user to set."""
  return what.split(" ")[0].split("[")[0]


# ---------------------------------------------------------------- hub


def _hub_endpoint():
  return os.environ.get("HF_ENDPOINT") or None  # read per call (huggingface_hub reads it once, at import)


def _hub_cache():
  return os.environ.get("HF_HUB_CACHE") or None  # the same


def fetch_hf(ref: Reference, what="model"):
  """The local snapshot folder (its subfolder, when given) of ``ref`` and its provenance (resolved commit)."""
  import huggingface_hub as hub
  from huggingface_hub import errors
  sub = ref.subfolder
  patterns = [f"{sub}/*.json" if sub else "*.json", f"{sub}/*.safetensors" if sub else "*.safetensors"]
  how = (f"run once on a machine with internet (it fills the Hugging Face cache, HF_HOME), or download the "
         f"repository's safetensors and config.json and pass the folder: --{_field(what)}=DIR")
  try:
    folder = hub.snapshot_download(ref.target, revision=ref.revision, allow_patterns=patterns, endpoint=_hub_endpoint(),
                                   cache_dir=_hub_cache(), etag_timeout=TIMEOUT_S, local_files_only=offline())
  except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.GatedRepoError) as e:
    raise MissingFileError(f"{what} = {ref.text!r}: the hub has no such repository or revision, or it is gated "
                           f"({type(e).__name__}); check the name, or log in with `hf auth login`") from e
  except (errors.LocalEntryNotFoundError, OSError) as e:  # offline and not in the cache (and connection errors)
    reason = "downloads are off (HF_HUB_OFFLINE / JAXDIFF_OFFLINE)" if offline() else "the hub cannot be reached"
    raise MissingFileError(f"{what} = {ref.text!r}: hub repository {ref.target} is not in the local Hugging Face "
                           f"cache and {reason}; {how}") from e
  except Exception as e:  # huggingface_hub's HTTP errors (5xx, 401): say what the hub answered, in one line
    raise MissingFileError(f"{what} = {ref.text!r}: the hub refused the download ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); {how}") from e
  path = os.path.join(folder, sub) if sub else folder
  weights = [f for d, _, fs in os.walk(path) for f in fs if f.endswith(".safetensors")]
  if not weights:
    pickles = _hub_pickles(ref)
    if pickles:
      raise ModelFileError(f"{what} = {ref.text!r}: the repository holds only pickle weights ({', '.join(pickles[:3])})"
                           ", which jaxdiff never loads (a pickle can run code); use a revision or a repository with "
                           "safetensors weights, or convert the file yourself and pass its folder")
    raise ModelFileError(f"{what} = {ref.text!r}: the repository{' folder ' + sub if sub else ''} has no "
                         ".safetensors weights")
  return path, {"ref": ref.text, "repo": ref.target, "revision": os.path.basename(folder.rstrip("/")),
                "subfolder": sub}


def _hub_pickles(ref: Reference):
  """The pickle weight files of a hub repository (for the refusal's message; [] when the listing fails)."""
  import huggingface_hub as hub
  try:
    files = hub.HfApi(endpoint=_hub_endpoint()).list_repo_files(ref.target, revision=ref.revision)
  except Exception:  # offline after a cached snapshot: the message then names no files
    return []
  return [f for f in files if f.endswith(PICKLE_SUFFIXES) and f.startswith(ref.subfolder)]


# ---------------------------------------------------------------- single files


def _sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def url_cache_path(url):
  """Where ``url`` is kept: cache_dir()/url/<16 hex digits of the URL's sha256>/<file name>."""
  name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
  return os.path.join(cache_dir(), "url", hashlib.sha256(url.encode()).hexdigest()[:16], name)


def _replace(tmp, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  os.replace(tmp, path)


def fetch_url(ref: Reference, what="file"):
  """The cached local file of ``ref`` (downloaded on first use) and its provenance (URL, sha256)."""
  path = url_cache_path(ref.target)
  record = path + ".sha256"  # the hash of the first download, when the reference pins none
  if not os.path.isfile(path):
    if offline():
      raise MissingFileError(f"{what} = {ref.text!r}: not in the cache and downloads are off (HF_HUB_OFFLINE / "
                             f"JAXDIFF_OFFLINE); download {ref.target} elsewhere and pass --{_field(what)}=FILE, "
                             f"or put it at {path}")
    _download(ref, path, what)
  digest = _sha256(path)
  expected = ref.sha256 or (open(record).read().strip() if os.path.isfile(record) else None)
  if expected and digest != expected:
    raise ModelFileError(f"{what} = {ref.text!r}: the file's sha256 is {digest}, not the "
                         f"{'pinned' if ref.sha256 else 'recorded (first download)'} {expected}: refused, nothing "
                         f"loaded; delete {path} to download it again" + ("" if ref.sha256 else
                                                                          f" (and {record} to trust a new file)"))
  if not os.path.isfile(record):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
      f.write(digest + "\n")
    _replace(tmp, record)
  return path, {"ref": ref.text, "url": ref.target, "sha256": digest, "pinned": bool(ref.sha256)}


def _download(ref: Reference, path, what):
  """Streams ``ref.target`` into ``path`` (temporary file, then rename) with a progress bar; a pinned hash is
  checked before the file is kept."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  try:
    resp = urllib.request.urlopen(urllib.request.Request(ref.target, headers={"User-Agent": "jaxdiff"}),
                                  timeout=TIMEOUT_S)
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = getattr(e, "reason", None) or e
    raise MissingFileError(f"{what} = {ref.text!r}: cannot download {ref.target} ({reason}); download it on a "
                           f"machine with internet and pass --{_field(what)}=FILE, or put it at {path}") from e
  h = hashlib.sha256()
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
  try:
    total = int(resp.headers.get("Content-Length") or 0) or None
    with os.fdopen(fd, "wb") as f, resp, progress(total=total, desc=f"download {os.path.basename(path)}",
                                                  unit="B") as bar:
      for block in iter(lambda: resp.read(1 << 20), b""):
        f.write(block)
        h.update(block)
        bar.update(len(block))
    if ref.sha256 and h.hexdigest() != ref.sha256:
      raise ModelFileError(f"{what} = {ref.text!r}: the downloaded file's sha256 is {h.hexdigest()}, not the pinned "
                           f"{ref.sha256}: refused, nothing kept or loaded")
    _replace(tmp, path)
  except (urllib.error.URLError, OSError) as e:
    raise MissingFileError(f"{what} = {ref.text!r}: the download of {ref.target} broke off ({e}); run again") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
