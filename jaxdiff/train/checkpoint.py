"""Orbax checkpoints: periodic, async, keep-last-k, atomic, restored onto the current mesh.

Orbax writes each step into a temporary directory and renames it on commit, so a killed run leaves
no directory that loads as a valid checkpoint. A fingerprint of the model/optimiser configuration is
saved beside the state; restoring into a workdir made by another configuration fails clearly.
"""
from __future__ import annotations

import jax
import orbax.checkpoint as ocp

from jaxdiff.errors import IncompatibleResultsError
from jaxdiff.fingerprints import OVERWRITE_HINT, canonical, differences
from jaxdiff.parallel import replicated


class IncompatibleCheckpointError(IncompatibleResultsError):
  """A workdir's checkpoint (or export) was made under another configuration."""


class Checkpointer:
  """Orbax checkpoints of a train state with the run's ``fingerprint``; ``overwrite`` replaces checkpoints
  of another configuration instead of refusing them."""

  def __init__(self, directory, *, fingerprint: dict, max_to_keep=3, save_every=1000, async_save=True,
               overwrite=False):
    self.fingerprint = canonical(fingerprint)
    self.save_every = save_every
    self.overwrite = overwrite
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(directory, options=options)

  def latest_step(self):
    return self.manager.latest_step()

  def due(self, step, force=False):
    """Whether ``save(step, ..., force)`` would write a checkpoint."""
    return (force or (step != 0 and step % self.save_every == 0)) and self.manager.latest_step() != step

  def save(self, step, state, force=False):
    if not self.due(step, force):
      return False
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(self.fingerprint)))
    return True

  def restore_latest(self, template, mesh):
    """Restores the newest complete checkpoint onto ``mesh`` (replicated), or returns None."""
    step = self.manager.latest_step()
    if step is None:
      return None
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta != self.fingerprint:
      if self.overwrite:
        for s in self.manager.all_steps():
          self.manager.delete(s)
        return None
      diff = differences(meta, self.fingerprint)
      raise IncompatibleCheckpointError(
          f"{self.manager.directory} holds a checkpoint (step {step}) of a different configuration "
          f"({'; '.join(diff[:4])}{' …' if len(diff) > 4 else ''}): {OVERWRITE_HINT}")
    sh = replicated(mesh)
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), template)
    return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
