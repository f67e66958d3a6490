"""One registry of networks: ``build_model(cfg)`` from a ``config.model`` block, ``init_variables``.

Diffusion models take (x model-space [−1, 1], t) and return ε; classifiers take pixel-space [0, 1]
images (normalisation inside the network) and return logits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_CLASSIFIERS = {}


def register_classifier(name):
  def deco(fn):
    _CLASSIFIERS[name] = fn
    return fn
  return deco


def _dtype(name):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def classifier_names():
  from jaxdiff.models import classifiers  # noqa: F401  (registers)
  return sorted(_CLASSIFIERS)


def build_model(cfg):
  """``cfg.name``: 'unet' or a registered classifier name (see ``classifier_names()``)."""
  if cfg.name == "unet":
    from jaxdiff.models.unet import UNet, UNetConfig
    ucfg = UNetConfig.ddpm(
        image_size=cfg.image_size, in_channels=cfg.in_channels, base_channels=cfg.base_channels,
        channel_mults=tuple(cfg.channel_mults), attention_resolutions=tuple(cfg.attention_resolutions),
        layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout,
        dtype=_dtype(cfg.get("dtype", "float32")))
    return UNet(ucfg)
  names = classifier_names()
  if cfg.name not in names:
    raise ValueError(f"unknown model {cfg.name!r}; choose 'unet' or a classifier: {names}")
  kw = {k: v for k, v in cfg.items() if k not in ("name", "image_size", "in_channels", "dtype", "init_from")}
  return _CLASSIFIERS[cfg.name](dtype=_dtype(cfg.get("dtype", "float32")), **kw)


def init_variables(model, cfg, key):
  """Initial variables ({'params', ...}) for an input of the configured image shape."""
  x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels), jnp.float32)
  if cfg.name == "unet":
    return jax.jit(model.init)(key, x, jnp.zeros((1,)))
  return jax.jit(lambda k, x: model.init(k, x, train=False))(key, x)
