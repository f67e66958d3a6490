"""Experiment tasks: ``run(config, workdir)`` resolves the config's data and model references (``prepare``), then
dispatches on ``config.task``. A task imports tasks.common and the library, never another task."""
import importlib

TASKS = {
    "train_ddpm": "jaxdiff.tasks.train:train_ddpm",
    "train_classifier": "jaxdiff.tasks.train:train_classifier",
    "purification": "jaxdiff.tasks.purification:run_purification",
    "certify": "jaxdiff.tasks.certify:run_certify",
    "diff2": "jaxdiff.tasks.diff2:run",
    "baddiffusion": "jaxdiff.tasks.baddiffusion:run_baddiffusion",
    "zoo": "jaxdiff.tasks.zoo:run_zoo",
    "scan": "jaxdiff.tasks.scan:run_scan",
    "defend_zoo": "jaxdiff.tasks.defend_zoo:run_defend_zoo",
}


def run(config, workdir):
  """Runs ``config.task`` in ``workdir`` after ``prepare.prepare``: hf: / url: references fetched, train:
  references trained as stages (WORKDIR/models/), the dataset downloaded where it can be."""
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; choose one of {sorted(TASKS)}")
  from jaxdiff.tasks.prepare import prepare
  config, _ = prepare(config, workdir, run)
  module, fn = TASKS[config.task].split(":")
  return getattr(importlib.import_module(module), fn)(config, workdir)
