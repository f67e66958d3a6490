"""The scan's shared pieces (jaxdiff/tasks/defence.py)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff.backdoor import inversion
from jaxdiff.tasks import defence


def _pixel_encoder():
  return defence.encoder(ml_collections.ConfigDict({"encoder": "pixels"}), (8, 8, 1))


def test_pixel_encoder_is_pearson_for_images_that_vary():
  x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
  x = x.at[1].set(0.3 * x[0] + 0.5)  # an affine copy: Pearson 1
  want = np.corrcoef(np.asarray(x).reshape(6, -1))
  got = np.asarray(inversion.cosine_matrix(_pixel_encoder()(x)))
  # the constant coordinate moves cosines by O((0.01/std)²): std ≈ 0.29 for uniform pixels, 0.087 for the copy
  np.testing.assert_allclose(got, want, atol=(0.01 / 0.087) ** 2)
  keep = np.ix_([0, 2, 3, 4, 5], [0, 2, 3, 4, 5])  # without the copy: all stds ≈ 0.29
  np.testing.assert_allclose(got[keep], want[keep], atol=2 * (0.01 / 0.25) ** 2)


def test_pixel_encoder_counts_a_cluster_of_constant_images():
  """Black samples (e.g. a repaired model's output from ε + trigger) are one cluster for MSCR; Pearson's
  correlation is undefined for them, so a mean-centred encoder would count none."""
  varied = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
  black = jnp.zeros((9, 8, 8, 1)).at[0, 0, 0].set(0.016)  # one faint pixel: std 0.002, cosine 1/√1.04 to black
  x = jnp.concatenate([black, jnp.ones((1, 8, 8, 1)), varied])
  s = np.asarray(inversion.cosine_matrix(_pixel_encoder()(x)))
  np.testing.assert_allclose(s[0, 1:10], 1 / np.sqrt(1 + (np.std(black[0]) / defence.CONSTANT_STD) ** 2), rtol=1e-5)
  assert np.all(s[1:10, 1:10] > 1 - 1e-6)  # black and white: both constant
  assert np.all(np.abs(s[:10, 10:]) < 0.05)  # constant vs varied: ≈ 0.01/std
  assert inversion.mscr(_pixel_encoder()(x), 0.9) == 10 / 16
  # a cluster of copies of one varied image still counts, and the varied rest stays apart
  y = jnp.concatenate([jnp.repeat(varied[:1], 9, 0) + 0.01 * jax.random.normal(jax.random.key(2), (9, 8, 8, 1)),
                       varied[1:]])
  assert inversion.mscr(_pixel_encoder()(y), 0.9) == 9 / 14


def test_a_confirmed_hit_outranks_a_higher_unconfirmed_mscr():
  verdict_rank = defence.verdict_rank
  confirmed, unconfirmed = {"backdoored": True, "mscr": 0.6}, {"backdoored": False, "mscr": 0.8}
  assert max([unconfirmed, confirmed], key=verdict_rank) is confirmed
  assert max([{"backdoored": False, "mscr": 0.3}, unconfirmed], key=verdict_rank) is unconfirmed
