"""The sharded train step equals the single-device step on the same global batch (4 CPU devices)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdiff import diffusion as D
from jaxdiff.models import UNet, UNetConfig
from jaxdiff.parallel import make_mesh, replicated
from jaxdiff.train import classifier_loss, create_state, diffusion_loss, make_optimizer, make_train_step

TINY = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2),
                       attention_resolutions=(4,), norm_num_groups=4, layers_per_block=1, dropout=0.1)
# SGD: its step is proportional to the gradient. (Adam turns the float noise of parameters whose true
# gradient is zero, e.g. a bias feeding GroupNorm, into lr-sized steps whose sign depends on reduction order.)
OPT = ml_collections.ConfigDict(dict(name="sgd", lr=0.1, momentum=0.9, warmup_steps=2, grad_clip=1.0))


def _run(devices, loss_fn, model, variables, batch, steps=3, model_state=None):
  mesh = make_mesh(devices)
  opt = make_optimizer(OPT, 10)
  state = jax.device_put(create_state(variables["params"], opt, 0, model_state), replicated(mesh))
  step = make_train_step(model.apply, loss_fn, opt, mesh=mesh, ema_decay=0.9)
  losses = []
  for _ in range(steps):
    state, m = step(state, batch, None)
    losses.append(float(m["loss"]))
  return state, losses


@pytest.mark.skipif(jax.device_count() < 4, reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=4")
def test_sharded_diffusion_step_matches_single_device():
  model = UNet(TINY)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))
  batch = {"image": jax.random.uniform(jax.random.key(1), (16, 8, 8, 1)), "label": jnp.zeros(16, jnp.int32)}
  loss = diffusion_loss(D.linear_schedule())
  s1, l1 = _run(jax.devices()[:1], loss, model, variables, batch)
  s4, l4 = _run(jax.devices()[:4], loss, model, variables, batch)
  assert len(s4.params["conv_in"]["kernel"].sharding.device_set) == 4
  np.testing.assert_allclose(l1, l4, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s4.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert int(s4.step) == 3 and l1[-1] != l1[0]


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices")
def test_sharded_classifier_step_with_batchnorm_matches_single_device():
  from jaxdiff.models.cnn import SimpleCNN
  model = SimpleCNN(10, (8,))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  batch = {"image": jax.random.uniform(jax.random.key(1), (16, 8, 8, 1)),
           "label": jnp.arange(16, dtype=jnp.int32) % 10}
  kw = dict(model_state={"batch_stats": variables["batch_stats"]})
  s1, l1 = _run(jax.devices()[:1], classifier_loss(), model, variables, batch, **kw)
  s4, l4 = _run(jax.devices()[:4], classifier_loss(), model, variables, batch, **kw)
  np.testing.assert_allclose(l1, l4, rtol=1e-5)
  # BatchNorm statistics are computed over the global batch, not per device.
  for a, b in zip(jax.tree_util.tree_leaves(s1.model_state), jax.tree_util.tree_leaves(s4.model_state)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert not np.allclose(s4.model_state["batch_stats"]["BatchNorm_0"]["mean"], 0)


def test_optimizer_warmup_and_clip():
  from jaxdiff.train import learning_rate_schedule
  lr = learning_rate_schedule(1.0, warmup_steps=10, total_steps=110, decay="cosine")
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)], [0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
  opt = make_optimizer(ml_collections.ConfigDict(dict(name="sgd", lr=1.0, momentum=0.0, grad_clip=1.0)))
  g = {"w": jnp.array([30.0, 40.0])}
  upd, _ = opt.update(g, opt.init(g), g)
  np.testing.assert_allclose(upd["w"], [-0.6, -0.8], rtol=1e-6)  # clipped to norm 1
