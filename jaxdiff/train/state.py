"""Train state, optimiser and EMA."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a step needs and a checkpoint saves. ``key`` is raw uint32 key data (portable)."""
  step: jnp.ndarray
  params: Any
  ema_params: Any
  opt_state: Any
  model_state: Any  # e.g. {'batch_stats': ...} for BatchNorm classifiers; {} for the U-Net
  key: jnp.ndarray

  def step_key(self):
    """Key of this step: fold_in(seed key, step), so a resumed run draws the same noise."""
    return jax.random.fold_in(jax.random.wrap_key_data(self.key), self.step)


def create_state(params, optimizer, seed=0, model_state=None) -> TrainState:
  copy = lambda tree: jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32), tree)  # steps donate state
  params = copy(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=copy(params),
                    opt_state=optimizer.init(params), model_state=copy(model_state or {}),
                    key=jax.random.key_data(jax.random.key(seed)))


def learning_rate_schedule(lr, warmup_steps=0, total_steps=None, decay="constant"):
  """Linear warm-up then constant (DDPM) or cosine decay to 0 (BadDiffusion)."""
  if decay == "constant":
    after = optax.constant_schedule(lr)
  elif decay == "cosine":
    after = optax.cosine_decay_schedule(lr, max(1, (total_steps or 1) - warmup_steps))
  else:
    raise ValueError(f"unknown lr decay {decay!r}; use 'constant' or 'cosine'")
  if not warmup_steps:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), after], [warmup_steps])


def make_optimizer(cfg, total_steps=None):
  """``cfg``: name (adam|adamw|sgd), lr, warmup_steps, decay, grad_clip, weight_decay, momentum."""
  lr = learning_rate_schedule(cfg.lr, cfg.get("warmup_steps", 0), total_steps, cfg.get("decay", "constant"))
  name = cfg.get("name", "adam")
  if name == "adam":
    opt = optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))
  elif name == "adamw":
    opt = optax.adamw(lr, weight_decay=cfg.get("weight_decay", 0.0))
  elif name == "sgd":
    opt = optax.chain(optax.add_decayed_weights(cfg.get("weight_decay", 0.0)),
                      optax.sgd(lr, momentum=cfg.get("momentum", 0.9), nesterov=True))
  else:
    raise ValueError(f"unknown optimizer {name!r}; use adam, adamw or sgd")
  clip = cfg.get("grad_clip", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt


def ema_update(ema, params, step, decay):
  """EMA with the usual warm-up: d = min(decay, (1 + step)/(10 + step))."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
