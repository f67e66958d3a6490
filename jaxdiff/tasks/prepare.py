"""What runs before every task: its dataset made readable and every model reference turned into a local path.

A config field that names a model or a file may hold a reference (``convert.fetch``): ``hf:`` and ``url:`` are
fetched into the user's caches; ``train:CONFIG.py[:field=value,...]`` means "the export this config trains": the
training config runs as a stage in WORKDIR/models/<config name>-<fingerprint>/ (resumed after a kill, reused on the
next run, trained anew only when its settings change, which gives it a new folder). Order: the data first, then the
downloads, then the training stages, so that a machine without network fails in seconds, before hours of training.
WORKDIR/sources.json records where each model came from (hub revision, URL hash, training fingerprint); reports
carry it as ``"sources"``.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import importlib.util
import json
import os
import re
import sys

import ml_collections

from jaxdiff.convert import export_public_checkpoint, fetch, is_reference, parse_reference, split_overrides
from jaxdiff.convert.export import META_FILE
from jaxdiff.data import dataset_title, prepare_dataset
from jaxdiff.errors import ConfigError
from jaxdiff.fingerprints import canonical, check_or_record
from jaxdiff.io import is_writer, write_json
from jaxdiff.tasks.config import validate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_TASKS = ("train_classifier", "train_ddpm")
# train-block fields that change how a run is logged or stopped, not what it trains
_NOT_FINGERPRINTED = ("log_every", "checkpoint_every", "keep_checkpoints", "stop_at", "eval_every", "sample_every")


def references(config, prefix=""):
  """[(dotted field, index in a tuple or None, reference)] of every hf: / url: / train: value in ``config``."""
  out = []
  for k, v in config.items():
    path = f"{prefix}{k}"
    if isinstance(v, ml_collections.ConfigDict):
      out += references(v, path + ".")
    elif isinstance(v, str) and is_reference(v):
      out.append((path, None, v))
    elif isinstance(v, (tuple, list)):
      out += [(path, i, x) for i, x in enumerate(v) if isinstance(x, str) and is_reference(x)]
  return out


def _set(config, path, index, value):
  *parents, leaf = path.split(".")
  block = config
  for p in parents:
    block = block[p]
  if index is None:
    block[leaf] = value
  else:
    items = list(block[leaf])
    items[index] = value
    block[leaf] = tuple(items)


def prepare(config, workdir, run_task):
  """(config with every reference replaced by its local path, {field: provenance}). ``run_task(config, workdir)``
  runs a training stage (``jaxdiff.tasks.run``). ``config`` itself is not changed."""
  out = copy.deepcopy(config)
  sources = {}

  def resolve(path, index, value, how):
    what = f"config.{path}" + (f"[{index}]" if index is not None else "") + (
        f" ({dataset_title(config.data.name)})" if path.startswith("data.") else "")
    local, prov = how(value, what)
    with out.unlocked():
      _set(out, path, index, local)
    sources[what] = {**prov, "path": local}

  refs = references(config)
  trained = [r for r in refs if parse_reference(r[2]).kind == "train"]
  for r in sorted((r for r in refs if r not in trained), key=lambda r: not r[0].startswith("data.")):
    resolve(*r, fetch_model)
  prepare_dataset(out.data)
  for r in trained:
    resolve(*r, lambda value, what: train_stage(parse_reference(value), config, workdir, run_task, what))
  record = os.path.join(workdir, "sources.json")
  if sources:
    write_json(record, sources)
  elif os.path.exists(record) and is_writer():  # a run with no references: no stale provenance in its reports
    os.remove(record)
  return out, sources


def fetch_model(value, what):
  """``convert.fetch``, and a url: OpenAI checkpoint named like a public preset converted to its export folder."""
  path, prov = fetch(value, what)
  export = export_public_checkpoint(path) if prov.get("url") else None
  return (export, {**prov, "converted": os.path.basename(export)}) if export else (path, prov)


def load_config_file(path, what="config"):
  """``get_config()`` of a config file (a path, or one relative to the repository, e.g. configs/x.py)."""
  file = path if os.path.isfile(path) else os.path.join(REPO_ROOT, path)
  if not os.path.isfile(file):
    raise ConfigError(f"{what}: no config file {path!r} (nor {file!r})")
  root = os.path.dirname(os.path.dirname(os.path.abspath(file)))  # the folder holding the `configs` package
  if root not in sys.path:
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location(f"_jaxdiff_stage_{os.path.basename(file)[:-3]}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def apply_overrides(config, overrides, what):
  """'a.b=1,c.d=(1,2),e=resnet50' applied to ``config`` (values read as Python literals, else strings)."""
  for item in split_overrides(overrides):
    key, _, text = item.partition("=")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = key.strip().split(".")
    block = config
    try:
      for p in parents:
        block = block[p]
      if leaf not in block:
        raise KeyError(leaf)
      block[leaf] = value
    except (KeyError, TypeError, AttributeError) as e:
      raise ConfigError(f"{what}: cannot set {key!r} = {text!r} in the training config ({e})") from e
  return config


def stage_config(ref, parent, what):
  """The training config of a ``train:`` reference: its file, its overrides, and the parent's data route
  (``data.name`` / ``path`` / ``data_dir``) where it trains on the same dataset and the overrides set no data field:
  the stages of a run read the data the run reads."""
  c = apply_overrides(load_config_file(ref.target, what), ref.overrides, what)
  if c.task not in TRAIN_TASKS:
    raise ConfigError(f"{what} = {ref.text!r}: {ref.target} is a {c.task!r} config; a train: reference needs one of "
                      f"{TRAIN_TASKS}")
  same = c.data.name.replace("_archive", "") == parent.data.name.replace("_archive", "")
  if same and not re.search(r"(^|,)data\.", ref.overrides):
    c.data.update(name=parent.data.name, path=parent.data.path, data_dir=parent.data.data_dir)
  return c


def stage_fingerprint(c):
  """What a training stage's export depends on: the whole config but the logging and stopping fields."""
  fp = canonical(c)
  fp["train"] = {k: v for k, v in fp["train"].items() if k not in _NOT_FINGERPRINTED}
  return fp


def train_stage(ref, parent, workdir, run_task, what):
  """(export folder, provenance) of a ``train:`` reference, training it (or resuming its training) when its export
  is absent."""
  c = stage_config(ref, parent, what)
  fp = stage_fingerprint(c)
  digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:8]
  name = f"{os.path.splitext(os.path.basename(ref.target))[0]}-{digest}"
  folder = os.path.join(workdir, "models", name)
  export = os.path.join(folder, "export")
  os.makedirs(folder, exist_ok=True)
  check_or_record(os.path.join(folder, "stage.fingerprint.json"), fp, what="the training stage")
  if not os.path.isfile(os.path.join(export, META_FILE)):
    print(f"stage {name}: training {ref.text} into {folder}", flush=True)
    validate(c)
    run_task(c, folder)
    if not os.path.isfile(os.path.join(export, META_FILE)):  # stopped early (train.stop_at): resumable
      raise ConfigError(f"{what}: the training stage {folder} stopped before train.num_steps = {c.train.num_steps} "
                        "(train.stop_at); run the same command again to resume it")
  from jaxdiff.convert import load_params
  meta, _ = load_params(export)
  return export, {"ref": ref.text, "config": ref.target, "overrides": ref.overrides, "fingerprint": digest,
                  "steps": meta.get("steps"), "test_accuracy": meta.get("test_accuracy")}
