"""Shared layers against flax's own: jaxdiff's GroupNorm is nn.GroupNorm's function, values and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.models.layers import GroupNorm


@pytest.mark.parametrize("shape,groups", [((2, 8, 8, 32), 8), ((3, 4, 4, 64), 32), ((2, 16, 32), 4)])
def test_group_norm_is_flax_group_norm(shape, groups):
  x = 3.0 * jax.random.normal(jax.random.key(0), shape) + 1.5  # a mean far from 0
  params = {"params": {"scale": jax.random.normal(jax.random.key(1), shape[-1:]),
                       "bias": jax.random.normal(jax.random.key(2), shape[-1:])}}
  ours, ref = GroupNorm(groups, epsilon=1e-6), nn.GroupNorm(groups, epsilon=1e-6)
  assert jax.tree_util.tree_structure(ours.init(jax.random.key(3), x)) == jax.tree_util.tree_structure(params)
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=2e-5)
  ct = jax.random.normal(jax.random.key(4), shape)
  grad = lambda m: jax.grad(lambda p, x: jnp.vdot(m.apply(p, x), ct), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree_util.tree_leaves(grad(ours)), jax.tree_util.tree_leaves(grad(ref))):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
  # bf16 activations in: statistics and output in fp32, as the U-Net's norms
  assert ours.apply(params, x.astype(jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize("size,k,stride,pad", [(8, 3, 1, 1), (9, 3, 2, 0), (8, 3, 2, 1), (7, 1, 1, 0), (8, 3, 2, 0)])
def test_conv_nhwc_values_and_gradients_are_lax_conv(size, k, stride, pad):
  from jaxdiff.models.layers import conv_nhwc
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3, 5))
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride,) * 2, [(pad, pad)] * 2,
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, w: conv_nhwc(x, w, (stride,) * 2, pad)
  np.testing.assert_allclose(ours(x, w), ref(x, w), atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), ref(x, w).shape)
  grad = lambda f: jax.grad(lambda x, w: jnp.vdot(f(x, w), ct), argnums=(0, 1))(x, w)
  for a, b in zip(grad(ours), grad(ref)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_conv_input_gradient_inside_a_loop_uses_an_io_kernel():
  """The transposed convolution of the input gradient keeps the kernel HWIO (not O×I) inside a scan: XLA:CPU's
  fast path (see conv_nhwc)."""
  from jaxdiff.models.layers import conv_nhwc
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))

  def loss(x):
    return jnp.sum(jax.lax.scan(lambda h, _: (jnp.tanh(conv_nhwc(h, w, (1, 1), 1)), None), x, None, length=3)[0])
  hlo = jax.jit(jax.grad(loss)).lower(jnp.ones((1, 6, 6, 4))).compile().as_text()
  labels = [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines() if " convolution(" in line]
  assert labels and all("01oi" not in lab for lab in labels), labels


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(2, 64, 1, 32), (2, 197, 12, 16), (1, 50, 2, 64)],
                         ids=["unet-one-head", "vit-197-tokens", "clip"])
def test_fused_attention_matches_einsum_softmax_forward_and_gradient(dtype, shape):
  """models.layers.attention (jax.nn.dot_product_attention) against the explicit einsum + fp32 softmax the models
  used before, on CPU: outputs and the gradients of q, k, v, in fp32 and bf16."""
  import jax
  import jax.numpy as jnp

  from jaxdiff.models.layers import attention
  dt = jnp.dtype(dtype)
  q, k, v = (jax.random.normal(jax.random.key(i), shape, jnp.float32).astype(dt) for i in range(3))
  scale = shape[-1] ** -0.5

  def reference(q, k, v):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1).astype(dt), v)

  out, ref = attention(q, k, v, scale), reference(q, k, v)
  assert out.dtype == dt and out.shape == shape
  tol = 1e-5 if dtype == "float32" else 2e-2
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=tol, rtol=tol)
  cot = jax.random.normal(jax.random.key(9), shape, jnp.float32)
  loss = lambda f: lambda *a: jnp.sum(f(*a).astype(jnp.float32) * cot)
  g_new = jax.grad(loss(lambda *a: attention(*a, scale)), argnums=(0, 1, 2))(q, k, v)
  g_ref = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(g_new, g_ref):
    scale_b = float(jnp.max(jnp.abs(b.astype(jnp.float32))))
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol * max(scale_b, 1.0) * 2,
                               rtol=tol)
