"""Benchmark helpers: timing of jitted functions and FLOPs from XLA's cost analysis."""
from __future__ import annotations

import time

import jax

# Dense peak TFLOP/s by device kind (bf16, fp32 non-tensor-core), for "fraction of peak".
PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 67.0}, "H200": {"bfloat16": 989.0, "float32": 67.0},
               "A100": {"bfloat16": 312.0, "float32": 19.5}, "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
               "TPU v5": {"bfloat16": 197.0, "float32": 197.0}}


def flops_of(jitted, *args):
  """FLOPs of one call of a jitted function, from the compiled executable's cost analysis."""
  try:
    cost = jitted.lower(*args).compile().cost_analysis()
  except Exception:  # some backends do not report costs
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


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
  rec = {"name": name, "seconds_per_call": seconds, "items_per_sec": items / seconds, **extra}
  if flops:
    tflops = flops / seconds / 1e12
    rec.update(gflops_per_call=flops / 1e9, achieved_tflops=tflops)
    peak = peak_tflops(dtype)
    if peak:
      rec.update(peak_tflops=peak, fraction_of_peak=tflops / peak)
  return rec
