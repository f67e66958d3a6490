"""Benchmark helpers: timing of jitted functions and FLOPs from XLA's cost analysis."""
from __future__ import annotations

import json
import sys
import time

import jax

# Dense peak TFLOP/s by device kind, for "fraction of peak". float32 on NVIDIA: the TF32 tensor-core rate, which
# XLA's default precision (and cuDNN's default in torch) uses for float32 convolutions and matmuls.
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 494.0}, "H200": {"bfloat16": 989.0, "float32": 494.0},
               "A100": {"bfloat16": 312.0, "float32": 156.0}, "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
               "TPU v5": {"bfloat16": 197.0, "float32": 197.0}}


def flops_of(jitted, *args):
  """FLOPs of one call of a jitted function, from XLA's cost analysis of the lowered (backend-independent) HLO:
  a GPU executable's analysis leaves out the convolutions it hands to cuDNN. Where the device's lowering reports no
  costs (seen with jax 0.11 on CUDA), the same program lowered for the CPU is counted. Nothing is compiled."""
  lowerings = (lambda: jitted.lower(*args),
               lambda: jitted.trace(*args).lower(lowering_platforms=("cpu",)))
  for lower in lowerings:
    try:
      cost = lower().cost_analysis()
    except Exception:  # some versions / backends do not report costs
      continue
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    if flops and flops > 0:
      return float(flops)
  return None


def time_fn(fn, *args, warmup=1, iters=5):
  """Median-free simple timing: seconds per call after ``warmup`` calls (blocks on results)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / iters


def peak_tflops(dtype: str):
  kind = jax.devices()[0].device_kind
  for k, v in PEAK_TFLOPS.items():
    if k in kind:
      return v[dtype]
  return None


def throughput_record(name, seconds, items, flops=None, dtype="float32", **extra):
  """One result row; also printed to stderr at once, so a run cut short still shows what it measured."""
  rec = {"name": name, "seconds_per_call": seconds, "items_per_sec": items / seconds, **extra}
  print("row", json.dumps({"name": name, "seconds_per_call": seconds}), file=sys.stderr, flush=True)
  if flops:
    tflops = flops / seconds / 1e12
    rec.update(gflops_per_call=flops / 1e9, achieved_tflops=tflops)
    peak = peak_tflops(dtype)
    if peak:
      rec.update(peak_tflops=peak, fraction_of_peak=tflops / peak)
  return rec
