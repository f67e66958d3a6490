"""Deterministic, resumable, host-sharded batching with device prefetch.

Batch b of a run is a pure function of (seed, b): epoch e = b // steps_per_epoch takes the
permutation ``default_rng((seed, e))``, so a resumed run sees exactly the batches it would have
seen. With P hosts, host p reads rows [p·B/P, (p+1)·B/P) of each global batch of B.
"""
from __future__ import annotations

import collections
import itertools

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdiff.errors import ConfigError


def steps_per_epoch(num_examples, global_batch):
  """Whole global batches per epoch (the remainder is dropped); a batch larger than the dataset is a ``ConfigError``."""
  if global_batch > num_examples:
    raise ConfigError(f"batch size {global_batch} exceeds the {num_examples} examples of the dataset; use a smaller one")
  return num_examples // global_batch


def batch_indices(num_examples, global_batch, seed, step, process_index=0, process_count=1):
  """Indices of this host's share of global batch ``step`` (drop-remainder epochs)."""
  if global_batch % process_count:
    raise ConfigError(f"global batch {global_batch} is not divisible by {process_count} hosts")
  spe = steps_per_epoch(num_examples, global_batch)
  epoch, i = divmod(step, spe)
  perm = np.random.default_rng((seed, epoch)).permutation(num_examples)
  rows = perm[i * global_batch:(i + 1) * global_batch]
  per = global_batch // process_count
  return rows[process_index * per:(process_index + 1) * per]


def host_batches(source, global_batch, *, seed=0, start_step=0):
  """Yields (step, {'image', 'label'}) numpy batches of this host's share, forever."""
  for step in itertools.count(start_step):
    idx = batch_indices(len(source), global_batch, seed, step, jax.process_index(), jax.process_count())
    x, y = source.get(idx)
    yield step, {"image": x, "label": y}


def data_sharding(mesh):
  """Batches split over the mesh's "data" axis along their first dimension."""
  return NamedSharding(mesh, P("data"))


def to_device(batch, mesh):
  """Assembles a global jax.Array sharded over the mesh's 'data' axis from per-host numpy batches."""
  sh = data_sharding(mesh)
  return jax.tree_util.tree_map(lambda a: jax.make_array_from_process_local_data(sh, a), batch)


def prefetch(iterator, mesh, size=2):
  """Moves batches to the devices ``size`` steps ahead (transfers overlap the running step)."""
  queue = collections.deque()
  for step, batch in iterator:
    queue.append((step, to_device(batch, mesh)))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def eval_batches(source, batch_size, limit=None, stride=1):
  """In-order batches of (indices, images, labels) over ``range(0, limit, stride)``; last may be short."""
  n = len(source) if limit is None else min(limit * stride, len(source))
  order = np.arange(0, n, stride)
  for i in range(0, len(order), batch_size):
    idx = order[i:i + batch_size]
    x, y = source.get(idx)
    yield idx, x, y
