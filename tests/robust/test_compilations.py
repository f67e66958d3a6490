"""Weights are arguments: evaluating a second parameter set of the same architecture (φ then φ*) at another
σ compiles nothing new — for certification and for purification with its attacks."""
import contextlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import attacks
from jaxdiff.functional import jit_apply
from jaxdiff.models import build_model, init_variables
from jaxdiff.robust import DenoisedClassifier, PurifiedClassifier, Purifier, certify

UNET = ml_collections.ConfigDict(dict(name="unet", image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2),
                                      attention_resolutions=(4,), layers_per_block=1, norm_num_groups=4, dropout=0.0))
CNN = ml_collections.ConfigDict(dict(name="cnn", image_size=8, in_channels=1, num_classes=10, widths=(4,)))


def _models(seed):
  """Fresh module objects (equal by value) and a fresh parameter set, as a second load of a model gives."""
  unet, cnn = build_model(UNET), build_model(CNN)
  params = {"denoiser": init_variables(unet, UNET, jax.random.key(seed))["params"],
            "classifier": init_variables(cnn, CNN, jax.random.key(seed + 1))}
  return unet, cnn, params


@contextlib.contextmanager
def count_compilations():
  seen = []
  listener = lambda event, *a, **k: seen.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def test_certify_compiles_once_for_two_models_and_two_sigmas():
  x = jax.random.uniform(jax.random.key(9), (1, 8, 8, 1))
  unet, cnn, p1 = _models(0)
  kw = dict(num_classes=10, n0=8, n=40, alpha=0.001, batch_size=40)
  out1 = certify(DenoisedClassifier(unet, cnn), x, key=jax.random.key(1), sigma=0.25, params=p1, **kw)
  unet2, cnn2, p2 = _models(5)
  with count_compilations() as seen:
    out2 = certify(DenoisedClassifier(unet2, cnn2), x, key=jax.random.key(1), sigma=0.5, params=p2, **kw)
  assert seen == []
  # ... and the traced σ and weights are really used: another σ or model changes the votes
  assert not np.array_equal(out1[2], out2[2]) or not np.array_equal(out1[0], out2[0])


def test_purified_logits_and_pgd_compile_once_for_two_models():
  x = jax.random.uniform(jax.random.key(9), (2, 8, 8, 1))
  y = jnp.array([1, 2])

  def evaluate(models, eps):
    unet, cnn, params = models
    lf = PurifiedClassifier(Purifier(unet, t_bar=10, sampler="ddpm", num_steps=2), cnn)
    logits = jit_apply(lf, params, x, jax.random.key(3))
    adv = attacks.pgd_jit(lf, x, y, key=jax.random.key(4), eps=eps, steps=2, stochastic=True, params=params)
    return logits, adv

  l1, a1 = evaluate(_models(0), 0.03)
  second = _models(5)
  with count_compilations() as seen:
    l2, a2 = evaluate(second, 0.05)
  assert seen == []
  assert not np.allclose(l1, l2) and float(jnp.max(jnp.abs(a2 - x))) > 0.03 + 1e-4
