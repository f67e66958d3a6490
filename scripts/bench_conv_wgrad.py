"""The convolution weight gradient on CPU in three formulations, against XLA's own (``jax.vjp`` of the convolution):
9 shifted matmuls (Σ over the kernel taps of x_shiftedᵀ·g) and im2col patches with one matmul. Prints ms per call and
the relative error; #51 part 6 kept XLA's (docs/results.md, "Benchmarks").

  python scripts/bench_conv_wgrad.py
"""
import time, jax, jax.numpy as jnp
from jax import lax
NHWC = ("NHWC", "HWIO", "NHWC")
def conv(x, k, s=1, p=1): return lax.conv_general_dilated(x, k, (s, s), [(p, p)] * 2, dimension_numbers=NHWC)
def wgrad_xla(x, k, g):
  return jax.vjp(lambda kk: conv(x, kk), k)[1](g)[0]
def wgrad_shift(x, k, g, p=1):
  kh, kw = k.shape[:2]
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  H, W = g.shape[1:3]
  rows = []
  for i in range(kh):
    cols = []
    for j in range(kw):
      cols.append(jnp.einsum("bhwc,bhwo->co", xp[:, i:i + H, j:j + W], g))
    rows.append(jnp.stack(cols))
  return jnp.stack(rows)
def wgrad_patches(x, k, g, p=1):
  kh, kw, ci, co = k.shape
  pt = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), [(p, p)] * 2, dimension_numbers=NHWC)  # [B,H,W,ci*kh*kw] (c-major)
  d = jnp.einsum("bhwk,bhwo->ko", pt, g).reshape(ci, kh, kw, co)
  return d.transpose(1, 2, 0, 3)
for B, S, C in [(8, 32, 128), (8, 16, 256), (64, 16, 32)]:
  x = jax.random.normal(jax.random.key(0), (B, S, S, C)); k = jax.random.normal(jax.random.key(1), (3, 3, C, C)) * 0.05
  g = jax.random.normal(jax.random.key(2), (B, S, S, C))
  ref = jax.jit(wgrad_xla)(x, k, g)
  for name, f in [("xla", wgrad_xla), ("shift", wgrad_shift), ("patches", wgrad_patches)]:
    jf = jax.jit(f); out = jf(x, k, g).block_until_ready()
    err = float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))
    t = time.perf_counter(); n = 5
    for _ in range(n): jf(x, k, g).block_until_ready()
    print(B, S, C, name, f"{(time.perf_counter() - t) / n * 1e3:.1f} ms", f"err {err:.1e}")
