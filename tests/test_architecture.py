"""Layout rules that import-linter cannot see: every task is under the tasks contract, and every config field
an experiment file sets is declared with a default in configs/default.py (tasks never read `.get(k, default)`)."""
import configparser
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_task_module_is_in_the_independence_contract():
  cp = configparser.ConfigParser()
  cp.read(os.path.join(ROOT, ".importlinter"))
  layers = cp["importlinter:contract:tasks"]["layers"]
  listed = {name.strip() for line in layers.split("\n") for name in line.split("|") if name.strip()}
  on_disk = {os.path.splitext(n)[0] for n in os.listdir(os.path.join(ROOT, "jaxdiff", "tasks"))
             if n != "__init__.py" and (n.endswith(".py") or os.path.isdir(os.path.join(ROOT, "jaxdiff", "tasks", n)))
             and n != "__pycache__"}
  assert on_disk == listed


def _declared():
  from configs import default
  c = default.get_config()
  default.add_evaluation(c, denoiser="", classifier="")
  default.add_certification(c)
  default.add_diff2(c, surrogates=())
  default.add_baddiffusion(c)
  default.add_zoo(c, {"*": default.zoo_entry()})  # every zoo entry has the fields of zoo_entry
  default.add_scan(c)
  default.add_defend(c)
  default.add_defense(c, "reproject")
  return c


def _paths(cfg, prefix=()):
  for k, v in cfg.items():
    if hasattr(v, "items"):
      yield from _paths(v, prefix + (k,))
    else:
      yield prefix + (k,)


CONFIGS = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(".py") and n != "__init__.py")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_fields_are_declared_in_default(name):
  declared = set(_paths(_declared()))
  c = importlib.import_module(f"configs.{name}").get_config()
  # config.model holds the constructor arguments of the chosen network, which differ per architecture
  paths = [("zoo", "models", "*") + p[3:] if p[:2] == ("zoo", "models") else p for p in _paths(c)]
  undeclared = [p for p in paths if p not in declared and p[0] != "model"]
  assert not undeclared, f"configs/{name}.py sets fields that configs/default.py does not declare: {undeclared}"
