"""Device mesh and multi-host start-up. One code path for 1 and N devices: a 1-D 'data' mesh."""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def maybe_initialize_distributed():
  """Calls ``jax.distributed.initialize`` when the environment describes a multi-host job.

  Triggered by JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES, JAX_PROCESS_ID) or by a cluster that
  JAX auto-detects (TPU pods, SLURM) when JAXDIFF_DISTRIBUTED=1.
  """
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
  elif os.environ.get("JAXDIFF_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  """1-D mesh named 'data' over ``devices`` (default: every device of every host)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharded(mesh):
  return NamedSharding(mesh, P("data"))


def check_divisible(batch_size, mesh, what="batch size"):
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"{what} {batch_size} must be divisible by the {n} devices of the mesh; "
                     f"pick a multiple of {n}")
