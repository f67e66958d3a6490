"""parallel.run_once: the one-off init program compiled cheaply gives jax.jit's values, also under a trace."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.errors import ConfigError
from jaxdiff.models import UNetConfig
from jaxdiff.models.unet import UNet
from jaxdiff.parallel import enable_compilation_cache, run_once


def test_run_once_equals_jit_for_a_unet_init_and_traces():
  cfg = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                        norm_num_groups=4)
  model = UNet(cfg)
  args = (jax.random.key(3), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))
  want, got = jax.jit(model.init)(*args), run_once(model.init, *args)
  assert jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(got)
  for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=3e-7, atol=1e-7)  # the same draws, ≤ 1-2 ulp
  shapes = jax.eval_shape(lambda k: run_once(model.init, k, *args[1:]), args[0])
  assert [s.shape for s in jax.tree_util.tree_leaves(shapes)] == [a.shape for a in jax.tree_util.tree_leaves(want)]


def test_a_bad_compilation_cache_threshold_is_refused_before_the_cache_is_touched(tmp_path, monkeypatch):
  before = jax.config.jax_persistent_cache_min_compile_time_secs
  for bad in ("abc", "-1", "nan"):
    monkeypatch.setenv("JAXDIFF_COMPILATION_CACHE_MIN_SECONDS", bad)
    with pytest.raises(ConfigError, match="JAXDIFF_COMPILATION_CACHE_MIN_SECONDS = .* must be a number of seconds"):
      enable_compilation_cache(str(tmp_path / "xla"))
  assert not (tmp_path / "xla").exists() and jax.config.jax_persistent_cache_min_compile_time_secs == before
