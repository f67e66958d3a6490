"""The DDPM U-Net (Ho et al. 2020) as a pure Flax module, NHWC, laid out like diffusers' UNet2DModel.

Sub-module names follow the diffusers state dict (``down_blocks_0/resnets_1/conv1`` ↔
``down_blocks.0.resnets.1.conv1``) so ``jaxdiff.convert`` maps checkpoints mechanically.
Input x: [B, H, W, C] model space [−1, 1]; t: [B] float timestep indices; output ε: [B, H, W, C_out] fp32.
``dtype`` is the compute dtype (bf16 allowed); parameters stay fp32; norms and softmax run in fp32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.models.layers import Conv, GroupNorm, attention
from jaxdiff.parallel import run_once


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """Every size is a field. ``ddpm_cifar10()`` is Ho et al.'s CIFAR-10 model (35,746,307 params)."""
  in_channels: int = 3
  out_channels: int = 3
  block_out_channels: Sequence[int] = (128, 256, 256, 256)
  down_attention: Sequence[bool] = (False, True, False, False)   # per level, top → bottom
  up_attention: Sequence[bool] = (False, False, True, False)     # per up block, bottom → top
  layers_per_block: int = 2
  norm_num_groups: int = 32
  norm_eps: float = 1e-6
  dropout: float = 0.1
  attention_head_dim: int | None = None    # None: one head of all channels (diffusers default)
  mid_attention: bool = True
  mid_block_scale_factor: float = 1.0
  downsample_padding: int = 0
  flip_sin_to_cos: bool = False
  freq_shift: float = 1.0
  sample_size: int = 32
  dtype: Any = jnp.float32

  @classmethod
  def ddpm(cls, *, image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2),
           attention_resolutions=(16,), **kw):
    """Ho et al.'s parameterisation: attention at the listed feature-map resolutions."""
    chans = tuple(base_channels * m for m in channel_mults)
    down = tuple(image_size // 2 ** i in attention_resolutions for i in range(len(chans)))
    return cls(in_channels=in_channels, out_channels=kw.pop("out_channels", in_channels),
               block_out_channels=chans, down_attention=down, up_attention=down[::-1],
               sample_size=image_size, **kw)


def ddpm_cifar10(**kw) -> UNetConfig:
  """Ho et al.'s CIFAR-10 U-Net (google/ddpm-cifar10-32: 128 channels, mults 1,2,2,2, attention at 16×16,
  35.7M parameters); ``kw`` replaces fields."""
  return UNetConfig.ddpm(**kw)


def timestep_embedding(t, dim, flip_sin_to_cos=False, freq_shift=1.0, max_period=10000.0):
  """Sinusoidal embedding of (fractional) timesteps, diffusers ``get_timestep_embedding``."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], -1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], -1)
  return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _norm(cfg, name):
  return GroupNorm(cfg.norm_num_groups, epsilon=cfg.norm_eps, name=name)


class ResnetBlock(nn.Module):
  cfg: UNetConfig
  out_channels: int
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, x, temb, train):
    cfg, dt = self.cfg, self.cfg.dtype
    h = nn.silu(_norm(cfg, "norm1")(x)).astype(dt)
    h = Conv(self.out_channels, (3, 3), padding=1, dtype=dt, name="conv1")(h)
    h = h + nn.Dense(self.out_channels, dtype=dt, name="time_emb_proj")(nn.silu(temb))[:, None, None]
    h = nn.silu(_norm(cfg, "norm2")(h)).astype(dt)
    h = nn.Dropout(cfg.dropout, deterministic=not train)(h)
    h = Conv(self.out_channels, (3, 3), padding=1, dtype=dt, name="conv2")(h)
    if x.shape[-1] != self.out_channels:
      x = Conv(self.out_channels, (1, 1), dtype=dt, name="conv_shortcut")(x)
    return (x + h) / self.output_scale


class AttentionBlock(nn.Module):
  """Spatial self-attention with GroupNorm and a residual (diffusers ``Attention``)."""
  cfg: UNetConfig
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    cfg, dt = self.cfg, self.cfg.dtype
    b, hgt, wid, c = x.shape
    head_dim = cfg.attention_head_dim or c
    heads = c // head_dim
    h = _norm(cfg, "group_norm")(x).astype(dt).reshape(b, hgt * wid, c)
    proj = lambda name: nn.Dense(c, dtype=dt, name=name)(h).reshape(b, hgt * wid, heads, head_dim)
    q, k, v = proj("to_q"), proj("to_k"), proj("to_v")
    o = attention(q, k, v, 1.0 / math.sqrt(head_dim)).reshape(b, hgt * wid, c)
    o = nn.Dense(c, dtype=dt, name="to_out_0")(o).reshape(x.shape)
    return (o + x) / self.output_scale


class Downsample(nn.Module):
  cfg: UNetConfig

  @nn.compact
  def __call__(self, x):
    pad = self.cfg.downsample_padding
    if pad == 0:  # diffusers pads right/bottom by one, then a stride-2 valid conv
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return Conv(x.shape[-1], (3, 3), strides=2, padding=pad, dtype=self.cfg.dtype, name="conv")(x)


class Upsample(nn.Module):
  cfg: UNetConfig

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest ×2
    return Conv(c, (3, 3), padding=1, dtype=self.cfg.dtype, name="conv")(x)


class UNet(nn.Module):
  """ε_θ(x_t, t). ``train=True`` enables dropout (needs a 'dropout' rng)."""
  cfg: UNetConfig

  @nn.compact
  def __call__(self, x, t, train: bool = False):
    cfg, dt = self.cfg, self.cfg.dtype
    chans, nlev = tuple(cfg.block_out_channels), len(cfg.block_out_channels)
    if x.ndim != 4 or x.shape[-1] != cfg.in_channels:
      raise ValueError(f"UNet expects NHWC input with {cfg.in_channels} channels, got {x.shape}")
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
    temb = timestep_embedding(t, chans[0], cfg.flip_sin_to_cos, cfg.freq_shift)
    temb = nn.Dense(4 * chans[0], dtype=dt, name="time_embedding_linear_1")(temb)
    temb = nn.Dense(4 * chans[0], dtype=dt, name="time_embedding_linear_2")(nn.silu(temb))

    h = Conv(chans[0], (3, 3), padding=1, dtype=dt, name="conv_in")(x.astype(dt))
    skips = [h]
    for i, ch in enumerate(chans):
      for j in range(cfg.layers_per_block):
        h = ResnetBlock(cfg, ch, name=f"down_blocks_{i}_resnets_{j}")(h, temb, train)
        if cfg.down_attention[i]:
          h = AttentionBlock(cfg, name=f"down_blocks_{i}_attentions_{j}")(h)
        skips.append(h)
      if i < nlev - 1:
        h = Downsample(cfg, name=f"down_blocks_{i}_downsamplers_0")(h)
        skips.append(h)

    mid_scale = cfg.mid_block_scale_factor
    h = ResnetBlock(cfg, chans[-1], mid_scale, name="mid_block_resnets_0")(h, temb, train)
    if cfg.mid_attention:
      h = AttentionBlock(cfg, mid_scale, name="mid_block_attentions_0")(h)
    h = ResnetBlock(cfg, chans[-1], mid_scale, name="mid_block_resnets_1")(h, temb, train)

    for i, ch in enumerate(reversed(chans)):
      for j in range(cfg.layers_per_block + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = ResnetBlock(cfg, ch, name=f"up_blocks_{i}_resnets_{j}")(h, temb, train)
        if cfg.up_attention[i]:
          h = AttentionBlock(cfg, name=f"up_blocks_{i}_attentions_{j}")(h)
      if i < nlev - 1:
        h = Upsample(cfg, name=f"up_blocks_{i}_upsamplers_0")(h)

    h = nn.silu(_norm(cfg, "conv_norm_out")(h)).astype(dt)
    return Conv(cfg.out_channels, (3, 3), padding=1, dtype=dt, name="conv_out")(h).astype(jnp.float32)


def residual_streams(cfg: UNetConfig):
  """[(layer path, ...)] per residual stream of ``UNet(cfg)``: the layers whose outputs are summed into one
  stream, so their output channel c is the stream's channel c (zero them all and the stream's channel is zero).
  A stream starts at ``conv_in``, a down/upsampler or a ResnetBlock whose input width differs from its output
  (its ``conv_shortcut``; up blocks read a concatenation, so each of their ResnetBlocks starts one); each
  ResnetBlock's ``conv2`` and AttentionBlock's ``to_out_0`` add to the current one. These are the groups
  torch-pruning's dependency graph couples (Diff-Cleanse and Diff-Pruning prune with it). Walks the layers
  in ``UNet.__call__``'s order."""
  chans, nlev = tuple(cfg.block_out_channels), len(cfg.block_out_channels)
  streams = [["conv_in"]]
  width, skips = chans[0], [chans[0]]

  def resnet(name, cin, cout):
    if cin != cout:
      streams.append([f"{name}/conv_shortcut", f"{name}/conv2"])
    else:
      streams[-1].append(f"{name}/conv2")

  for i, ch in enumerate(chans):
    for j in range(cfg.layers_per_block):
      resnet(f"down_blocks_{i}_resnets_{j}", width, ch)
      width = ch
      if cfg.down_attention[i]:
        streams[-1].append(f"down_blocks_{i}_attentions_{j}/to_out_0")
      skips.append(width)
    if i < nlev - 1:
      streams.append([f"down_blocks_{i}_downsamplers_0/conv"])
      skips.append(width)
  resnet("mid_block_resnets_0", width, chans[-1])
  width = chans[-1]
  if cfg.mid_attention:
    streams[-1].append("mid_block_attentions_0/to_out_0")
  resnet("mid_block_resnets_1", width, width)
  for i, ch in enumerate(reversed(chans)):
    for j in range(cfg.layers_per_block + 1):
      resnet(f"up_blocks_{i}_resnets_{j}", width + skips.pop(), ch)
      width = ch
      if cfg.up_attention[i]:
        streams[-1].append(f"up_blocks_{i}_attentions_{j}/to_out_0")
    if i < nlev - 1:
      streams.append([f"up_blocks_{i}_upsamplers_0/conv"])
  return [tuple(s) for s in streams]


def init_unet(cfg: UNetConfig, key, batch_size=1):
  """Returns (model, params) with params initialised for ``cfg`` (fp32)."""
  model = UNet(cfg)
  x = jnp.zeros((batch_size, cfg.sample_size, cfg.sample_size, cfg.in_channels), jnp.float32)
  params = run_once(model.init, key, x, jnp.zeros((batch_size,), jnp.float32))["params"]
  return model, params


def eps_fn_of(model, params, learned_sigma=False):
  """ε_θ(x_t, t) of a U-Net module with ``params``, in eval mode: the ``eps_fn`` the samplers take. A learned-σ
  model (the ADM U-Net, 2C output channels) contributes its ε half, the first C channels; with
  ``learned_sigma=True`` the whole output (ε, v), for the DDPM sampler's ``variance="learned"``."""
  apply = model.apply if learned_sigma else eps_apply(model)
  return lambda x, t: apply({"params": params}, x, t)


def eps_apply(model):
  """``apply(variables, x, t, **kw)`` of a denoiser that returns the ε half of a learned-σ output (2C channels, ε
  first) and the whole output otherwise: what fine-tuning losses compare with the noise. The σ half gets no
  gradient from them (improved diffusion trains it with its L_vlb term, which no loss here has)."""
  def apply(variables, x, t, **kw):
    out = model.apply(variables, x, t, **kw)
    return out[..., :x.shape[-1]] if out.shape[-1] == 2 * x.shape[-1] else out
  return apply


def count_params(tree) -> int:
  """The number of scalars in a parameter tree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
