"""Device mesh and multi-host start-up. One code path for 1 and N devices: a 1-D 'data' mesh."""
import contextlib
import os
import sys
import threading

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdiff.errors import ConfigError

_DIST_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def maybe_initialize_distributed(timeout_s=None):
  """Calls ``jax.distributed.initialize`` when the environment describes a multi-host job.

  Triggered by JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES and JAX_PROCESS_ID, all three checked) or by a
  cluster that JAX auto-detects (TPU pods, SLURM) when JAXDIFF_DISTRIBUTED=1. Waiting for the other processes
  times out after ``timeout_s`` (JAXDIFF_INIT_TIMEOUT, default 300 s) with a message saying who is missing.
  """
  timeout_s = int(timeout_s or os.environ.get("JAXDIFF_INIT_TIMEOUT", 300))
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    missing = [v for v in _DIST_VARS if not os.environ.get(v)]
    if missing:
      raise ConfigError(f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not: set all of "
                        f"{', '.join(_DIST_VARS)} (JAX_PROCESS_ID = 0 … JAX_NUM_PROCESSES − 1), or none")
    try:
      n, pid = int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"])
    except ValueError as e:
      raise ConfigError(f"JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers ({e})") from e
    if not (n >= 1 and 0 <= pid < n):
      raise ConfigError(f"JAX_PROCESS_ID={pid} must be in [0, JAX_NUM_PROCESSES={n})")
    others = ", ".join(str(i) for i in range(n) if i != pid)
    message = (f"process {pid} waited {timeout_s} s for the other {n - 1} process(es) of JAX_COORDINATOR_ADDRESS="
               f"{os.environ['JAX_COORDINATOR_ADDRESS']}: start them with the same command and JAX_PROCESS_ID={others}")
    with _watchdog(timeout_s, message):  # XLA aborts the process on its own deadline: ours comes first
      jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"], num_processes=n,
                                 process_id=pid, initialization_timeout=timeout_s + 60)
  elif os.environ.get("JAXDIFF_DISTRIBUTED") == "1":
    jax.distributed.initialize(initialization_timeout=timeout_s)


def compilation_cache_dir(setting=None):
  """Where the persistent XLA compilation cache lives, or None when it is off: ``setting`` (a directory or
  "off"), else $JAXDIFF_COMPILATION_CACHE (the same), else $XDG_CACHE_HOME/jaxdiff/xla (~/.cache/jaxdiff/xla)."""
  setting = setting or os.environ.get("JAXDIFF_COMPILATION_CACHE", "")
  if setting.lower() in ("off", "0", "none", "false"):
    return None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.abspath(os.path.expanduser(setting)) if setting else os.path.join(base, "jaxdiff", "xla")


def enable_compilation_cache(setting=None, min_compile_seconds=None):
  """Turns on JAX's persistent compilation cache at ``compilation_cache_dir(setting)`` (programs that took
  ≥ ``min_compile_seconds`` to compile are stored; default $JAXDIFF_COMPILATION_CACHE_MIN_SECONDS, else 1), so a
  second run of a config loads the compiled U-Net instead of recompiling it. Returns the directory, or None when
  the cache is off. Call before anything compiles."""
  path = compilation_cache_dir(setting)
  if path is None:
    return None
  if min_compile_seconds is None:
    setting_s = os.environ.get("JAXDIFF_COMPILATION_CACHE_MIN_SECONDS", "1")
    try:
      min_compile_seconds = float(setting_s)
    except ValueError:
      min_compile_seconds = -1.0
    if not min_compile_seconds >= 0:
      raise ConfigError(f"JAXDIFF_COMPILATION_CACHE_MIN_SECONDS = {setting_s!r} must be a number of seconds ≥ 0 "
                        "(0 stores every program; unset: 1)")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def run_once(fn, *args):
  """``jax.jit(fn)(*args)`` for a program that runs once (parameter init), compiled on CPU at XLA's lowest backend
  optimisation level: there its compile time, mostly LLVM on the threefry draws of every parameter, is many times
  its run time (a tiny U-Net's init: 13.1 s → 3.8 s). The same draws up to 1–2 ulp of the normal transform. Other
  backends compile as usual; inside a trace (``jax.eval_shape``) it is plain ``jax.jit``."""
  if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args)):
    return jax.jit(fn)(*args)
  lowered = jax.jit(fn).lower(*args)
  options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
  return lowered.compile(compiler_options=options)(*args)


def barrier(name):
  """Waits until every process reaches ``name`` (multi-process runs only; a no-op otherwise). Used after the
  writer changed files that every process then reads (a resumed TSV, a replaced result)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def _watchdog(seconds, message):
  """Ends the process with exit status 2 and ``message`` on stderr if the block runs longer than ``seconds``
  (jax.distributed.initialize cannot be interrupted: on its own deadline XLA aborts with a stack dump)."""
  done = threading.Event()

  def watch():
    if not done.wait(seconds):
      sys.stderr.write(f"error: {message}\n")
      sys.stderr.flush()
      os._exit(2)

  threading.Thread(target=watch, daemon=True).start()
  try:
    yield
  finally:
    done.set()


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
    raise ConfigError(f"{what} {batch_size} must be divisible by the {n} devices of the mesh; pick a multiple of {n}")
