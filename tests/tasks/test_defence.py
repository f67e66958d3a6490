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


def test_trojdiff_backdoor_sampling_with_r_at_the_real_mu_is_the_zoo_trojan_sampling(tmp_path):
  """BBTI's TrojDiff sampling (x_T = γε + r, r standing for μ = (1 − γ)δ) at the real trigger gives what the zoo's
  TrojDiff sampling (generation: backdoor.start, then the trojan reverse with δ) gives for the same x_T; with γ 0
  it is the plain sampler from ε + r, which differs."""
  from conftest import tiny_exports
  from jaxdiff.backdoor.generative import make_backdoor
  from jaxdiff.convert import load_model
  from jaxdiff.tasks import generation
  model, v, _ = load_model(tiny_exports(tmp_path, 8, 1)[0], kind="unet")
  bd = make_backdoor("trojdiff_d2i", 8, 1, target="shoe", trigger_size=14)
  gamma, delta = float(bd.gamma), jnp.asarray(bd.trigger)
  x_T = bd.start(jax.random.key(0), (3, 8, 8, 1))
  noise = (x_T - (1 - gamma) * delta) / gamma
  key = jax.random.key(1)
  want = generation._sampler(model, "linear", 1000, "ddim", 3, gamma)(v["params"], x_T, key, delta)
  got = defence.jitted_sample_fn(model, "linear", 1000, "ddim", 3, gamma)(v["params"], noise, (1 - gamma) * delta, key)
  np.testing.assert_allclose(got, want, atol=1e-4)  # x_T → (ε, r) → x_T rounds in float32
  plain = defence.jitted_sample_fn(model, "linear", 1000, "ddim", 3)(v["params"], noise, (1 - gamma) * delta, key)
  assert float(jnp.abs(plain - want).max()) > 1e-2
  s = ml_collections.ConfigDict({"samplers": ("ddpm", "ddim"), "trojan_gammas": (0.6, 0.1)})
  assert [m for m, _, _ in defence.bbti_modes(s)] == ["ddpm", "ddim", "ddpm+trojdiff0.6", "ddim+trojdiff0.6",
                                                      "ddpm+trojdiff0.1", "ddim+trojdiff0.1"]


def test_repair_outcome_tells_a_collapse_from_a_removal():
  """The digits VillanDiffusion repair of issue #50: real-trigger ASR 80 % → 0 %, but every ε + trigger one black
  image. The papers' ASR calls it removed; the outcome says the trigger still takes over generation."""
  s = ml_collections.ConfigDict({"encoder": "pixels", "kappa": 0.9})
  black = jnp.zeros((16, 8, 8, 1)).at[:, 0, 0, 0].set(jnp.linspace(0, 0.005, 16))
  varied = jax.random.uniform(jax.random.key(3), (16, 8, 8, 1))
  enc = _pixel_encoder()
  assert defence.collapse_share(s, enc, black) == 1.0 and defence.collapse_share(s, enc, varied) == 1 / 16
  assert defence.repair_outcome(1.0, 0.5, asr=0.0)[0] == "collapsed"
  assert defence.repair_outcome(1 / 16, 0.5, asr=0.0)[0] == "removed"
  assert defence.repair_outcome(1.0, 0.5, asr=0.8)[0] == "target"  # the target itself: the ASR says so
  assert defence.repair_outcome(1.0, 0.5)[0] == "collapsed"  # a scan: no real target known
  code, words = defence.repair_outcome(0.88, 0.5, asr=0.0)
  assert "88% of triggered samples still collapse into one image" in words
