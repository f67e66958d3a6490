"""The training loop: resume, sharded prefetch, progress bar, metrics, periodic callbacks, checkpoints, and a
guard that stops at the first non-finite loss or gradient norm."""
from __future__ import annotations

import math
import time

import jax
import numpy as np

from jaxdiff.data import batch_indices, host_batches, prefetch
from jaxdiff.errors import NonFiniteError
from jaxdiff.io import MetricWriter
from jaxdiff.parallel import replicated
from jaxdiff.progress import progress


def train_loop(state, train_step, source, *, mesh, workdir, num_steps, global_batch, seed, checkpointer,
               log_every=50, callbacks=(), stop_at=None, desc="train", frozen=None):
  """Runs ``train_step`` until ``state.step == num_steps`` and returns the final state.

  Resumes from ``checkpointer``'s newest checkpoint; batches are a pure function of (seed, step).
  ``callbacks``: (every, fn(state)) pairs run on the host every ``every`` steps (sample grids, evals).
  ``stop_at`` ends early at that step after checkpointing (used to test resume after a kill).
  ``frozen``: weights the loss reads but does not train (see ``make_train_step``).

  Non-finite guard: each step's loss and gradient norm are read while the next step runs (no stall), and
  always before a checkpoint, a callback or the end; the first NaN/Inf raises ``NonFiniteError`` naming the
  step, the loss terms and the batch rows, and no checkpoint of non-finite parameters is ever written.
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
  pending = None  # (step, metrics) not yet checked for finiteness

  def check(pending):
    step, metrics = pending
    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not (math.isfinite(m["loss"]) and math.isfinite(m.get("grad_norm", 0.0))):
      bar.close()
      checkpointer.wait()  # let a save of an earlier, finite step finish
      rows = batch_indices(len(source), global_batch, seed, step)
      terms = ", ".join(f"{k}={v:.4g}" for k, v in m.items())
      raise NonFiniteError(
          f"non-finite loss or gradient at step {step + 1} ({terms}); batch rows {np.asarray(rows).tolist()} of "
          f"the training set (seed {seed}). Stopped; the newest checkpoint (step {checkpointer.latest_step()}) "
          "holds finite weights. Lower optim.lr or raise optim.grad_clip, or check the data.")
    return m

  for step, batch in batches:
    if step >= end:
      break
    state, metrics = train_step(state, batch, frozen)
    if pending is not None:
      check(pending)  # the previous step: finished or nearly, while this one runs
    pending = (step, metrics)
    done = step + 1
    bar.update(1)
    due = [fn for every, fn in callbacks if every and (done % every == 0 or done == num_steps)]
    if done % log_every == 0 or done == end or due or checkpointer.due(done, force=done == end):
      m, pending = check(pending), None
      if done % log_every == 0 or done == end:
        rate = (done - n0) / max(time.time() - t0, 1e-9)
        m.update(steps_per_sec=rate, examples_per_sec=rate * global_batch)
        bar.set_postfix(loss=f"{m['loss']:.4f}")
        writer.write(done, m)
        t0, n0 = time.time(), done
    for fn in due:
      fn(state)
    checkpointer.save(done, state, force=done == end)
  if pending is not None:
    check(pending)
  bar.close()
  checkpointer.wait()
  return state
