"""Train → close → export: the one driver every task trains with (DDPMs, classifiers, backdoor fine-tunes)."""
from __future__ import annotations

import os

from jaxdiff.parallel import check_divisible
from jaxdiff.train.checkpoint import Checkpointer
from jaxdiff.train.loop import train_loop
from jaxdiff.train.state import create_state, make_optimizer
from jaxdiff.train.step import make_train_step


def fit(model, variables, loss_fn, source, *, config, workdir, mesh, fingerprint, frozen=None, callbacks=(),
        model_state_keys=(), export=None, desc="train", apply_fn=None):
  """Trains ``variables`` of ``model`` with ``loss_fn`` on ``source`` until ``config.train.num_steps``.

  Resumable: orbax checkpoints in WORKDIR/checkpoints carry ``fingerprint`` (a different configuration is
  refused, or replaced with ``config.overwrite``), batches and keys are functions of (seed, step). ``config`` supplies ``optim`` and
  ``train.{num_steps, batch_size, ema_decay, checkpoint_every, keep_checkpoints, log_every, stop_at}``.
  ``model_state_keys`` (e.g. 'batch_stats') are trained as model state. When the run reaches num_steps,
  ``export(state)`` writes the result. ``apply_fn``: what ``loss_fn`` calls (default ``model.apply``; denoisers pass
  ``models.eps_apply(model)``). Returns (state, finished).
  """
  t = config.train
  check_divisible(t.batch_size, mesh)
  optimizer = make_optimizer(config.optim, t.num_steps)
  model_state = {k: variables[k] for k in model_state_keys if k in variables}
  state = create_state(variables["params"], optimizer, config.seed, model_state)
  step = make_train_step(apply_fn or model.apply, loss_fn, optimizer, mesh=mesh, ema_decay=t.ema_decay)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), fingerprint=fingerprint, max_to_keep=t.keep_checkpoints,
                      save_every=t.checkpoint_every, overwrite=config.overwrite)
  state = train_loop(state, step, source, mesh=mesh, workdir=workdir, num_steps=t.num_steps, global_batch=t.batch_size,
                     seed=config.seed, checkpointer=ckpt, log_every=t.log_every, callbacks=callbacks,
                     stop_at=t.stop_at or None, desc=desc, frozen=frozen)
  ckpt.close()
  finished = int(state.step) == t.num_steps
  if finished and export is not None:
    export(state)
  return state, finished
