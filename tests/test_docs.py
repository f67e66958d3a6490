"""The front door holds: every `python launch/main.py …` command of the README and the guides names a config that
exists, with overrides that parse and validate; the README stays short; every public function and class of the API
reference has a docstring."""
import glob
import importlib
import inspect
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "guides", "*.md"))) + [
    os.path.join(ROOT, "docs", "results.md")]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # DIR, FILE, VIT_DIR, W: the reader supplies these
API_PACKAGES = ("diffusion", "models", "attacks", "robust", "backdoor", "metrics", "convert", "data")


def _commands(path):
  """The `python launch/main.py …` lines of the fenced code blocks of a Markdown file (continuations joined)."""
  text = open(path).read()
  out = []
  for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):  # fences paired line by line
    if lang not in ("", "bash", "sh"):
      continue
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      line = line.split(" #")[0].strip().rstrip("&").strip()
      if "launch/main.py" in line:
        out.append(line[line.index("python"):])
  return out


def _parse(command):
  from absl import flags
  from ml_collections import config_flags
  args = shlex.split(command)[1:]  # drop "python"
  fv = flags.FlagValues()  # config_flags reads the overrides from the argv it is given, as launch/main.py's parser
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=args)
  flags.DEFINE_string("workdir", None, "", flag_values=fv)
  fv(args)
  return fv.config, args


def test_every_documented_command_names_a_config_whose_overrides_validate(monkeypatch):
  from jaxdiff.errors import ConfigError
  from jaxdiff.tasks.config import validate
  monkeypatch.chdir(ROOT)
  commands = {(os.path.relpath(p, ROOT), c) for p in DOCS for c in _commands(p)}
  assert len(commands) >= 20
  for where, command in sorted(commands):
    config = re.search(r"--config=(\S+)", command).group(1)
    assert os.path.isfile(os.path.join(ROOT, config)), f"{where}: {command}: no {config}"
    cfg, args = _parse(command)  # an unknown field or a value of the wrong type raises here
    placeholders = [a.split("=", 1)[0] for a in args if "=" in a and PLACEHOLDER.match(a.split("=", 1)[1].split("/")[0])]
    try:
      validate(cfg)
    except ConfigError as e:  # only a field the reader must fill in may be missing
      assert any(p.removeprefix("--") in str(e) for p in placeholders) or "zoo_workdir" in str(e), \
          f"{where}: {command}: {e}"


def test_readme_is_the_front_door():
  lines = open(os.path.join(ROOT, "README.md")).read().splitlines()
  assert len(lines) <= 250
  for guide in re.findall(r"\]\((docs/[^)]+)\)", "\n".join(lines)):
    assert os.path.isfile(os.path.join(ROOT, guide)), guide


def test_every_public_function_of_the_api_reference_has_a_docstring():
  missing = []
  for name in API_PACKAGES:
    module = importlib.import_module(f"jaxdiff.{name}")
    for attr, obj in vars(module).items():
      if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
        continue
      if not (getattr(obj, "__module__", "") or "").startswith("jaxdiff"):
        continue
      doc = inspect.getdoc(obj)
      if not doc or (inspect.isclass(obj) and doc == inspect.getdoc(object)):
        missing.append(f"jaxdiff.{name}.{attr}")
  assert not missing, f"public names without a docstring: {missing}"


@pytest.mark.parametrize("path", DOCS)
def test_guides_link_to_files_that_exist(path):
  for target in re.findall(r"\]\(([^)#]+)\)", open(path).read()):
    if "://" in target:
      continue
    assert os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), target))), f"{path}: {target}"
