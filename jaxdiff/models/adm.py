"""The ADM U-Net of improved / guided diffusion (Nichol & Dhariwal 2021; Dhariwal & Nichol 2021) as a pure Flax
module, NHWC: res blocks with optional scale-shift norm, up/down-sampling res blocks, multi-head attention with the
legacy (heads, then q/k/v) or new (q/k/v, then heads) channel order, learned-σ output, optional class conditioning.

Parameters form a flat tree keyed by the OpenAI state dict's module paths with dots as underscores
(``input_blocks.1.0.in_layers.2.weight`` ↔ ``input_blocks_1_0_in_layers_2/kernel``), so ``convert.openai`` maps
checkpoints mechanically. Input x: [B, H, W, C] model space [−1, 1]; t: [B] timestep indices; y: [B] labels when
class-conditional. Output [B, H, W, out_channels] fp32 (with learned σ: ε in the first C channels, then the
variance interpolation v, as the OpenAI code splits them).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.layers import Conv, GroupNorm, attention


@dataclasses.dataclass(frozen=True)
class ADMConfig:
  """``UNetModel``'s constructor arguments (guided_diffusion/unet.py); ``attention_ds`` are downsampling factors."""
  image_size: int = 32
  in_channels: int = 3
  model_channels: int = 128
  out_channels: int = 3
  num_res_blocks: int = 2
  attention_ds: Sequence[int] = (2,)
  dropout: float = 0.0
  channel_mult: Sequence[float] = (1, 2, 2, 2)
  num_classes: int | None = None
  num_heads: int = 1
  num_head_channels: int = -1
  num_heads_upsample: int = -1
  use_scale_shift_norm: bool = False
  resblock_updown: bool = False
  use_new_attention_order: bool = False
  conv_resample: bool = True
  dtype: Any = jnp.float32


# ``create_model`` arguments of the public checkpoints (their model_and_diffusion_defaults + the flags they were
# trained with): improved diffusion's CIFAR-10 model (Carlini et al.'s denoiser; cosine schedule, 4,000 steps) and
# guided diffusion's ImageNet 256 × 256 unconditional model (DiffPure's; linear schedule, 1,000 steps).
PUBLIC_CHECKPOINTS = {
    "cifar10_uncond_50M_500K": dict(image_size=32, num_channels=128, num_res_blocks=3, channel_mult="1,2,2,2",
                                    learn_sigma=True, attention_resolutions="16,8", dropout=0.3),
    "256x256_diffusion_uncond": dict(image_size=256, num_channels=256, num_res_blocks=2, learn_sigma=True,
                                     attention_resolutions="32,16,8", num_head_channels=64,
                                     use_scale_shift_norm=True, resblock_updown=True),
}


def create_model_config(image_size, num_channels, num_res_blocks, channel_mult="", learn_sigma=False,
                        class_cond=False, attention_resolutions="16", num_heads=1, num_head_channels=-1,
                        num_heads_upsample=-1, use_scale_shift_norm=False, dropout=0.0, resblock_updown=False,
                        use_new_attention_order=False, use_checkpoint=False, use_fp16=False, dtype=jnp.float32,
                        num_classes=1000):
  """``ADMConfig`` from the keyword arguments of the OpenAI code's ``create_model`` (same defaults and parsing:
  ``channel_mult`` "" picks the image size's default, strings are comma lists; ``attention_resolutions`` are
  feature-map resolutions). ``use_checkpoint`` / ``use_fp16`` are accepted and ignored (``dtype`` instead)."""
  del use_checkpoint, use_fp16
  if channel_mult in ("", None):
    defaults = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4),
                32: (1, 2, 2, 2)}
    if image_size not in defaults:
      raise ValueError(f"no default channel_mult for image_size {image_size}: pass channel_mult='1,2,2,2'")
    channel_mult = defaults[image_size]
  elif isinstance(channel_mult, str):
    channel_mult = tuple(int(m) for m in channel_mult.split(","))
  res = attention_resolutions.split(",") if isinstance(attention_resolutions, str) else attention_resolutions
  return ADMConfig(image_size=image_size, in_channels=3, model_channels=num_channels,
                   out_channels=6 if learn_sigma else 3, num_res_blocks=num_res_blocks,
                   attention_ds=tuple(image_size // int(r) for r in res), dropout=dropout,
                   channel_mult=tuple(channel_mult), num_classes=num_classes if class_cond else None,
                   num_heads=num_heads, num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
                   use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
                   use_new_attention_order=use_new_attention_order, dtype=dtype)


def timestep_embedding(t, dim, max_period=10000.0):
  """The OpenAI sinusoidal embedding: [cos, sin] of t·exp(−log(max_period)·k/half)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.pad(jnp.concatenate([jnp.cos(args), jnp.sin(args)], -1), ((0, 0), (0, dim % 2)))


def _resample(x, up):
  b, h, w, c = x.shape
  if up:  # nearest ×2
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))  # 2×2 average pooling


class ADMUNet(nn.Module):
  """The improved/guided-diffusion ``UNetModel``; see the module docstring for shapes and parameter names."""
  cfg: ADMConfig

  def _norm(self, name):
    return GroupNorm(32, epsilon=1e-5, name=name)

  def _res(self, p, x, emb, out_ch, train, up=False, down=False):
    cfg, dt = self.cfg, self.cfg.dtype
    h = nn.silu(self._norm(f"{p}_in_layers_0")(x)).astype(dt)
    if up or down:
      h, x = _resample(h, up), _resample(x, up)
    h = Conv(out_ch, (3, 3), padding=1, dtype=dt, name=f"{p}_in_layers_2")(h)
    e = nn.Dense(2 * out_ch if cfg.use_scale_shift_norm else out_ch, dtype=dt, name=f"{p}_emb_layers_1")(
        nn.silu(emb))[:, None, None].astype(jnp.float32)
    if cfg.use_scale_shift_norm:
      scale, shift = jnp.split(e, 2, -1)
      h = self._norm(f"{p}_out_layers_0")(h) * (1 + scale) + shift
    else:
      h = self._norm(f"{p}_out_layers_0")(h + e)
    h = nn.Dropout(cfg.dropout, deterministic=not train)(nn.silu(h).astype(dt))
    h = Conv(out_ch, (3, 3), padding=1, dtype=dt, name=f"{p}_out_layers_3")(h)
    if x.shape[-1] != out_ch:
      x = Conv(out_ch, (1, 1), dtype=dt, name=f"{p}_skip_connection")(x)
    return (x.astype(jnp.float32) + h.astype(jnp.float32)).astype(dt)

  def _attn(self, p, x, heads):
    cfg = self.cfg
    b, hh, ww, c = x.shape
    heads = c // cfg.num_head_channels if cfg.num_head_channels != -1 else heads
    ch = c // heads
    qkv = nn.Dense(3 * c, dtype=cfg.dtype, name=f"{p}_qkv")(self._norm(f"{p}_norm")(x).astype(cfg.dtype))
    qkv = qkv.reshape(b, hh * ww, 3 * c)
    if cfg.use_new_attention_order:  # split q, k, v, then heads
      q, k, v = (a.reshape(b, -1, heads, ch) for a in jnp.split(qkv, 3, -1))
    else:  # legacy: split heads, then q, k, v
      q, k, v = jnp.split(qkv.reshape(b, -1, heads, 3 * ch), 3, -1)
    a = attention(q, k, v, 1.0 / math.sqrt(ch)).reshape(b, hh, ww, c)  # OpenAI scales q and k by ch^-¼ each
    return x + nn.Dense(c, dtype=cfg.dtype, name=f"{p}_proj_out")(a.astype(cfg.dtype)).astype(x.dtype)

  @nn.compact
  def __call__(self, x, t, y=None, train: bool = False):
    cfg, dt = self.cfg, self.cfg.dtype
    if (y is None) != (cfg.num_classes is None):
      raise ValueError("pass labels y if and only if the model is class-conditional")
    mc, temb_dim = cfg.model_channels, cfg.model_channels * 4
    emb = nn.Dense(temb_dim, name="time_embed_0")(timestep_embedding(t, mc))
    emb = nn.Dense(temb_dim, name="time_embed_2")(nn.silu(emb))
    if y is not None:
      emb = emb + nn.Embed(cfg.num_classes, temb_dim, name="label_emb")(y)
    heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
    ch = int(cfg.channel_mult[0] * mc)
    h = Conv(ch, (3, 3), padding=1, dtype=dt, name="input_blocks_0_0")(x.astype(dt))
    hs, ds, i = [h], 1, 1
    for level, mult in enumerate(cfg.channel_mult):
      for _ in range(cfg.num_res_blocks):
        ch = int(mult * mc)
        h = self._res(f"input_blocks_{i}_0", h, emb, ch, train)
        if ds in cfg.attention_ds:
          h = self._attn(f"input_blocks_{i}_1", h, cfg.num_heads)
        hs.append(h)
        i += 1
      if level != len(cfg.channel_mult) - 1:
        if cfg.resblock_updown:
          h = self._res(f"input_blocks_{i}_0", h, emb, ch, train, down=True)
        elif cfg.conv_resample:
          h = Conv(ch, (3, 3), strides=2, padding=1, dtype=dt, name=f"input_blocks_{i}_0_op")(h)
        else:
          h = _resample(h, up=False)
        hs.append(h)
        ds, i = ds * 2, i + 1
    h = self._res("middle_block_0", h, emb, ch, train)
    h = self._attn("middle_block_1", h, cfg.num_heads)
    h = self._res("middle_block_2", h, emb, ch, train)
    i = 0
    for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
      for j in range(cfg.num_res_blocks + 1):
        ch = int(mc * mult)
        h = self._res(f"output_blocks_{i}_0", jnp.concatenate([h, hs.pop()], -1), emb, ch, train)
        n = 1
        if ds in cfg.attention_ds:
          h = self._attn(f"output_blocks_{i}_1", h, heads_up)
          n = 2
        if level and j == cfg.num_res_blocks:
          if cfg.resblock_updown:
            h = self._res(f"output_blocks_{i}_{n}", h, emb, ch, train, up=True)
          else:
            h = _resample(h, up=True)
            if cfg.conv_resample:
              h = Conv(ch, (3, 3), padding=1, dtype=dt, name=f"output_blocks_{i}_{n}_conv")(h)
          ds //= 2
        i += 1
    h = nn.silu(self._norm("out_0")(h)).astype(dt)
    return Conv(cfg.out_channels, (3, 3), padding=1, dtype=dt, name="out_2")(h).astype(jnp.float32)
