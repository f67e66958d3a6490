"""Runs any experiment: ``python launch/main.py --config=configs/<experiment>.py --workdir=DIR``.

Any config field can be overridden, e.g. ``--config.train.num_steps=100``; unknown fields are errors.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for `configs.*`

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, images and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  from jaxdiff.parallel import maybe_initialize_distributed
  maybe_initialize_distributed()
  import jax
  from jaxdiff import tasks
  cfg = flags.FLAGS.config
  workdir = flags.FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2))
  print(f"task={cfg.task} workdir={workdir} devices={jax.device_count()} ({jax.devices()[0].platform})",
        flush=True)
  tasks.run(cfg, workdir)


if __name__ == "__main__":
  app.run(main)
