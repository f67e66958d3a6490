"""bench.timing: FLOPs from the lowered program (closed form for a matmul), with the CPU-lowering fallback."""
import jax
import jax.numpy as jnp

from jaxdiff.bench.timing import flops_of


def test_flops_of_matmul_is_2mnk():
  f = jax.jit(lambda a, b: a @ b)
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  assert flops_of(f, a, b) == 2 * 64 * 32 * 16


def test_flops_of_falls_back_to_the_cpu_lowering():
  f = jax.jit(lambda a, b: a @ b)

  class NoCostOnDevice:  # what jax 0.11 on CUDA did: the device lowering reports no costs
    def lower(self, *args):
      raise RuntimeError("cost analysis unavailable")

    def trace(self, *args):
      return f.trace(*args)
  a = jnp.ones((8, 8))
  assert flops_of(NoCostOnDevice(), a, a) == 2 * 8 ** 3
