import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models import UNet, UNetConfig, count_params, ddpm_cifar10, init_unet

TINY = UNetConfig.ddpm(image_size=16, in_channels=1, base_channels=16, channel_mults=(1, 2),
                       attention_resolutions=(8,), norm_num_groups=8, layers_per_block=1)


def test_cifar10_parameter_count_matches_diffusers():
  cfg = ddpm_cifar10()
  shapes = jax.eval_shape(UNet(cfg).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,)))
  assert count_params(shapes["params"]) == 35_746_307


def test_tiny_unet_shapes_dropout_and_bf16():
  model, params = init_unet(TINY, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 16, 16, 1))
  t = jnp.array([0., 10.5, 999.])
  apply = jax.jit(model.apply, static_argnames="train")
  out = apply({"params": params}, x, t)
  assert out.shape == x.shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, apply({"params": params}, x, t))  # deterministic eval
  a = apply({"params": params}, x, t, train=True, rngs={"dropout": jax.random.key(2)})
  b = apply({"params": params}, x, t, train=True, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(a, b)
  # The time embedding matters: same x, different t → different ε.
  assert not np.allclose(out[0], apply({"params": params}, x, t[::-1])[2])
  bf16 = UNet(UNetConfig(**{**TINY.__dict__, "dtype": jnp.bfloat16}))
  out16 = jax.jit(bf16.apply)({"params": params}, x, t)
  assert out16.dtype == jnp.float32
  assert float(jnp.abs(out16 - out).max()) < 0.05 * float(jnp.abs(out).max()) + 0.05
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))


def test_eps_apply_takes_the_eps_half_of_a_learned_sigma_output():
  import flax.linen as nn

  from jaxdiff.models import eps_apply

  class Net(nn.Module):
    out: int

    @nn.compact
    def __call__(self, x, t, train=False):
      return nn.Dense(self.out)(x) + t[:, None, None, None]

  x, t = jnp.ones((2, 4, 4, 3)), jnp.array([1.0, 2.0])
  for out in (3, 6):
    net = Net(out)
    v = net.init(jax.random.key(0), x, t)
    full = net.apply(v, x, t)
    np.testing.assert_array_equal(eps_apply(net)(v, x, t), full[..., :3])
