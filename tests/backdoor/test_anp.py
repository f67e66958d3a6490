"""ANP for a diffusion U-Net: mask semantics, the inner maximisation, the mask update, pruning by threshold."""
import functools

import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion
from jaxdiff.backdoor import anp, pruning
from jaxdiff.models import UNet, UNetConfig

TINY = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2),
                       attention_resolutions=(4,), layers_per_block=1, norm_num_groups=4, dropout=0.0)
MODEL = UNet(TINY)
EPS_APPLY = lambda p, x, t: MODEL.apply({"params": p}, x, t)


def _params():
  params = MODEL.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
  return jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(p.size), p.shape), params)


def test_a_zero_mask_silences_the_channel_after_its_norm_and_ones_change_nothing():
  params = _params()
  groups = pruning.channel_groups(params)
  ones = {g.name: jnp.ones(g.size) for g in groups}
  same = anp.scale_channels(params, groups, ones)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same)))
  name = next(g.name for g in groups if g.name.endswith("conv1"))
  scales = {**ones, name: jnp.ones(ones[name].shape).at[3].set(0.0)}
  _, inter = jax.jit(functools.partial(MODEL.apply, capture_intermediates=True))({"params": anp.scale_channels(params, groups, scales)}, jax.random.normal(
      jax.random.key(1), (2, 8, 8, 1)), jnp.array([10.0, 500.0]))
  norm2 = tu.flatten_dict(inter["intermediates"])[tuple(name.split("/")[:-1]) + ("norm2", "__call__")][0]
  assert float(jnp.abs(norm2[..., 3]).max()) == 0.0 and float(jnp.abs(norm2[..., 2]).max()) > 0


@pytest.mark.slow  # three ANP compilations of the U-Net
def test_anp_perturbation_raises_the_loss_and_the_masks_descend_it():
  params, sched = _params(), diffusion.make_schedule("linear", 1000)
  groups = tuple(pruning.channel_groups(params))
  x0 = jax.random.uniform(jax.random.key(2), (8, 8, 8, 1), minval=-1, maxval=1)
  gap = {}
  for steps in (1, 3):  # the inner max finds worse neighbours, more so with more ascent steps
    seen = []
    masks = anp.anp_masks(EPS_APPLY, params, sched, [x0] * 6, jax.random.key(3), eps=0.4, lr=0.05, steps=steps,
                          callback=lambda i, m: seen.append(jax.tree.map(float, m)))
    gap[steps] = np.mean([m["perturbed"] - m["natural"] for m in seen])
  assert 0 < gap[1] < gap[3]
  for name, m in masks.items():
    assert m.shape == (next(g.size for g in groups if g.name == name),) and m.min() >= 0 and m.max() <= 1
  assert min(m.min() for m in masks.values()) < 1  # some mask moved
  compiled = anp._anp_step._cache_size()
  frozen = anp.anp_masks(EPS_APPLY, params, sched, [x0] * 2, jax.random.key(3), lr=0.0, steps=3)
  assert all(np.all(m == 1) for m in frozen.values())
  assert anp._anp_step._cache_size() == compiled  # another learning rate, the same compilation
  # α = 1 and ε = 0: plain SGD on the masks, which lowers the DDPM loss on fixed (t, noise)
  t = jnp.tile(jnp.array([50.0, 300.0, 600.0, 900.0]), 2)
  noise = jax.random.normal(jax.random.key(4), x0.shape)
  loss = lambda m: float(anp._loss_at(EPS_APPLY, groups, params, m, sched.q_sample(x0, t, noise), t, noise))
  fitted = anp.anp_masks(EPS_APPLY, params, sched, [x0] * 8, jax.random.key(5), eps=0.0, alpha=1.0, lr=0.05)
  assert loss({k: jnp.asarray(v) for k, v in fitted.items()}) < loss({g.name: jnp.ones(g.size) for g in groups})


def test_anp_prune_zeroes_the_channels_below_the_threshold():
  params = _params()
  groups = pruning.channel_groups(params)
  masks = {g.name: np.linspace(0, 1, g.size) for g in groups}
  out, pruned = anp.anp_prune(params, masks, threshold=0.2)
  for g in groups:
    np.testing.assert_array_equal(pruned[g.name], masks[g.name] < 0.2)
  expect = pruning.apply_mask(params, pruning.channel_mask(params, groups, pruned))
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(expect)):
    np.testing.assert_array_equal(a, b)
