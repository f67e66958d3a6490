"""Runs any experiment: ``python launch/main.py --config=configs/<experiment>.py --workdir=DIR``.

Any config field can be overridden, e.g. ``--config.train.num_steps=100``; unknown fields are errors.
Exit status 2 means the input was refused (a config value, a missing or broken file, a workdir made under
other settings, a non-finite loss): one line on stderr says which and what to do. Other failures are bugs
and keep their traceback.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for `configs.*`

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, images and reports.")
flags.DEFINE_string("compilation_cache", "", "Persistent XLA compilation cache: a directory, or 'off' (default: "
                    "$JAXDIFF_COMPILATION_CACHE, else ~/.cache/jaxdiff/xla).")
flags.mark_flags_as_required(["config", "workdir"])


def refuse(message):
  """One line on stderr and exit status 2: the user's input was refused."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def parse_flags(argv):
  """absl's parser, with bad or unknown config overrides refused in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    refuse(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # ml_collections' override errors
    text = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\\'", "").strip("'\" ").replace(" Did you", ". Did you")
    refuse(f"unknown or invalid config field in an override: {text}")


def main(argv):
  if len(argv) > 1:
    refuse(f"unexpected arguments: {argv[1:]}")
  from absl import logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  from jaxdiff.errors import UserError
  try:
    from jaxdiff.parallel import enable_compilation_cache, maybe_initialize_distributed
    maybe_initialize_distributed()
    cache = enable_compilation_cache(flags.FLAGS.compilation_cache)
    import jax
    from jaxdiff import tasks
    from jaxdiff.io import atomic_write
    from jaxdiff.tasks.config import validate
    cfg = flags.FLAGS.config
    workdir = flags.FLAGS.workdir
    validate(cfg)  # before anything is written: a bad rerun never replaces a workdir's config.json
    os.makedirs(workdir, exist_ok=True)
    atomic_write(os.path.join(workdir, "config.json"), cfg.to_json_best_effort(indent=2) + "\n")  # process 0 only
    print(f"task={cfg.task} workdir={workdir} devices={jax.device_count()} ({jax.devices()[0].platform}) "
          f"compilation_cache={cache or 'off'}", flush=True)
    tasks.run(cfg, workdir)
  except UserError as e:
    refuse(e)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
