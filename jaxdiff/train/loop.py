"""The training loop: resume, sharded prefetch, progress bar, metrics, periodic callbacks, checkpoints."""
from __future__ import annotations

import os
import time

import jax

from jaxdiff.data import host_batches, prefetch
from jaxdiff.io import MetricWriter
from jaxdiff.parallel import replicated
from jaxdiff.report.progress import progress


def train_loop(state, train_step, source, *, mesh, workdir, num_steps, global_batch, seed, checkpointer,
               log_every=50, callbacks=(), stop_at=None, desc="train"):
  """Runs ``train_step`` until ``state.step == num_steps`` and returns the final state.

  Resumes from ``checkpointer``'s newest checkpoint; batches are a pure function of (seed, step).
  ``callbacks``: (every, fn(state)) pairs run on the host every ``every`` steps (sample grids, evals).
  ``stop_at`` ends early at that step after checkpointing (used to test resume after a kill).
  """
  restored = checkpointer.restore_latest(state, mesh)
  # Replicated on the mesh from the start, as the step returns it: one compilation, not two.
  state = restored if restored is not None else jax.device_put(state, replicated(mesh))
  start = int(state.step)
  writer = MetricWriter(workdir, resume_step=start)
  if start:
    writer.write(start, {"resumed_from": start}, prefix="")
  end = num_steps if stop_at is None else min(stop_at, num_steps)
  batches = prefetch(host_batches(source, global_batch, seed=seed, start_step=start), mesh)
  bar = progress(total=num_steps, initial=start, desc=desc, unit="step")
  t0, n0 = time.time(), start
  metrics = None
  for step, batch in batches:
    if step >= end:
      break
    state, metrics = train_step(state, batch)
    done = step + 1
    bar.update(1)
    if done % log_every == 0 or done == end:
      m = {k: float(v) for k, v in jax.device_get(metrics).items()}
      rate = (done - n0) / max(time.time() - t0, 1e-9)
      m.update(steps_per_sec=rate, examples_per_sec=rate * global_batch)
      bar.set_postfix(loss=f"{m['loss']:.4f}")
      writer.write(done, m)
      t0, n0 = time.time(), done
    for every, fn in callbacks:
      if every and (done % every == 0 or done == num_steps):
        fn(state)
    checkpointer.save(done, state, force=done == end)
  bar.close()
  checkpointer.wait()
  return state
