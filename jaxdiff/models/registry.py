"""One registry of networks: ``build_model(cfg)`` from a ``config.model`` block, ``init_variables``.

Diffusion models take (x model space [−1, 1], t) and return ε; classifiers take pixel-space [0, 1]
images (normalisation inside the network) and return logits. The registry imports the family modules;
they never import it (no cycle).
"""
from __future__ import annotations

import dataclasses
import inspect

import jax.numpy as jnp

from jaxdiff.models.adm import ADMUNet, create_model_config
from jaxdiff.models.cnn import SimpleCNN
from jaxdiff.models.densenet import DenseNet
from jaxdiff.models.dla import DLA
from jaxdiff.models.resnet import BasicBlock, Bottleneck, ResNet, WideResNet
from jaxdiff.models.shufflenet import ShuffleNetV2
from jaxdiff.models.swin import Swin
from jaxdiff.models.unet import UNet, UNetConfig
from jaxdiff.models.vit import TimmViT, ViT
from jaxdiff.parallel import run_once

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cnn(num_classes=10, widths=(32, 64), dtype=jnp.float32):
  return SimpleCNN(num_classes, tuple(widths), dtype)


def resnet18(num_classes=10, width=1.0, dtype=jnp.float32):
  return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, dtype)


def resnet50(num_classes=10, width=1.0, dtype=jnp.float32):
  return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width, dtype)


def wrn18(num_classes=10, width=2.0, dtype=jnp.float32):
  """'Wide-ResNet-18' of the DIFF2 surrogates: ResNet-18 with channels widened ×2."""
  return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, dtype)


def wrn28_10(num_classes=10, depth=28, widen=10, dropout=0.0, dtype=jnp.float32):
  return WideResNet(depth, widen, num_classes, dropout, dtype)


def densenet121(num_classes=10, width=1.0, dtype=jnp.float32):
  return DenseNet((6, 12, 24, 16), 32, num_classes, width, dtype)


def dla34(num_classes=10, width=1.0, dtype=jnp.float32):
  return DLA(num_classes, width, dtype)


def shufflenetv2(num_classes=10, width=1.0, dtype=jnp.float32):
  return ShuffleNetV2(num_classes, width, dtype)


def vit_small(num_classes=10, patch=4, dim=384, depth=12, heads=6, dtype=jnp.float32):
  return ViT(num_classes, patch, dim, depth, heads, 4, dtype)


def _timm_vit(size, dim, heads):
  def vit(num_classes=10, resolution=224, patch=16, dim=dim, depth=12, heads=heads, mlp_dim=0, mean=(0.5,) * 3,
          std=(0.5,) * 3, resize="bilinear", dtype=jnp.float32):
    return TimmViT(num_classes, resolution, patch, dim, depth, heads, mlp_dim or 4 * dim, tuple(mean), tuple(std),
                   resize, dtype)
  vit.__name__ = f"vit_{size}_patch16_224"
  vit.__doc__ = (f"ViT-{size[0].upper()}/16 in timm's layout (``models.vit.TimmViT``; ViT-B/16 is Carlini et al.'s "
                 "CIFAR-10 classifier); smaller resolution / depth / dim give the architecture at test size.")
  return vit


vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224 = (
    _timm_vit("tiny", 192, 3), _timm_vit("small", 384, 6), _timm_vit("base", 768, 12))


def swin_tiny(num_classes=10, patch=2, window=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24),
              dtype=jnp.float32):
  return Swin(num_classes, patch, window, dim, tuple(depths), tuple(heads), dtype)


CLASSIFIERS = {f.__name__: f for f in (cnn, resnet18, resnet50, wrn18, wrn28_10, densenet121, dla34, shufflenetv2,
                                        vit_small, swin_tiny, vit_tiny_patch16_224, vit_small_patch16_224,
                                        vit_base_patch16_224)}
# config.model keys that describe the input or the run, not the classifier constructor
_NOT_CONSTRUCTOR_KEYS = ("name", "image_size", "in_channels", "dtype", "init_from")


def classifier_names():
  """The names ``build_model`` accepts for classifiers (``config.model.name``), sorted."""
  return sorted(CLASSIFIERS)


def unet_config(cfg) -> UNetConfig:
  """The ``UNetConfig`` of a ``config.model`` block with name 'unet' (Ho et al.'s parameterisation)."""
  return UNetConfig.ddpm(
      image_size=cfg.image_size, in_channels=cfg.in_channels, base_channels=cfg.base_channels,
      channel_mults=tuple(cfg.channel_mults), attention_resolutions=tuple(cfg.attention_resolutions),
      layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout,
      dtype=DTYPES[cfg.get("dtype", "float32")])


def unet_config_dict(ucfg: UNetConfig) -> dict:
  """A ``config.model`` block (name 'unet_config') holding every field of a UNetConfig, e.g. of an imported
  diffusers model, so that its fine-tuned exports rebuild the same network."""
  d = {f.name: getattr(ucfg, f.name) for f in dataclasses.fields(ucfg) if f.name != "dtype"}
  d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
  return {"name": "unet_config", **d, "image_size": ucfg.sample_size, "dtype": "float32"}


def build_model(cfg):
  """``cfg.name``: 'unet' (Ho et al.'s parameterisation), 'unet_config' (every UNetConfig field, see
  ``unet_config_dict``) or a classifier name (see ``classifier_names()``). Returns a flax module."""
  if cfg.name == "unet":
    return UNet(unet_config(cfg))
  if cfg.name == "unet_config":
    fields = {f.name for f in dataclasses.fields(UNetConfig)} - {"dtype"}
    kw = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items() if k in fields}
    return UNet(UNetConfig(**kw, dtype=DTYPES[cfg.get("dtype", "float32")]))
  if cfg.name == "adm":  # the OpenAI improved/guided-diffusion U-Net: create_model's keyword arguments
    keys = set(inspect.signature(create_model_config).parameters) - {"dtype"}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in keys}
    return ADMUNet(create_model_config(**kw, dtype=DTYPES[cfg.get("dtype", "float32")]))
  if cfg.name not in CLASSIFIERS:
    raise ValueError(f"unknown model {cfg.name!r}; choose 'unet', 'adm' or a classifier: {classifier_names()}")
  kw = {k: v for k, v in cfg.items() if k not in _NOT_CONSTRUCTOR_KEYS}
  return CLASSIFIERS[cfg.name](dtype=DTYPES[cfg.get("dtype", "float32")], **kw)


def init_variables(model, cfg, key):
  """Initial variables ({'params', ...}) for an input of the configured image shape."""
  x = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.in_channels), jnp.float32)
  if cfg.name in ("unet", "unet_config", "adm"):
    return run_once(model.init, key, x, jnp.zeros((1,)))
  return run_once(lambda k, x: model.init(k, x, train=False), key, x)
