"""Orbax checkpoints: periodic, async, keep-last-k, atomic, restored onto the current mesh.

Orbax writes each step into a temporary directory and renames it on commit, so a killed run leaves
no directory that loads as a valid checkpoint. A fingerprint of the model/optimiser configuration is
saved beside the state; restoring into a workdir made by another configuration fails clearly.
"""
from __future__ import annotations

import json

import jax
import orbax.checkpoint as ocp

from jaxdiff.parallel import replicated


class IncompatibleCheckpointError(ValueError):
  pass


class Checkpointer:
  def __init__(self, directory, *, fingerprint: dict, max_to_keep=3, save_every=1000, async_save=True):
    self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples → lists
    self.save_every = save_every
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(directory, options=options)

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step, state, force=False):
    if not force and (step == 0 or step % self.save_every):
      return False
    if self.manager.latest_step() == step:
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
      diff = sorted(k for k in set(meta) | set(self.fingerprint) if meta.get(k) != self.fingerprint.get(k))
      raise IncompatibleCheckpointError(
          f"{self.manager.directory} holds a checkpoint (step {step}) of a different configuration "
          f"(differs in: {', '.join(diff)}). Use a fresh --workdir, or restore the original config.")
    sh = replicated(mesh)
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), template)
    return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
