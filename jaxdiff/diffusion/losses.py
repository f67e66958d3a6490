"""Diffusion training losses (model space [−1, 1], NHWC)."""
import jax
import jax.numpy as jnp


def eps_loss(eps_fn, schedule, x0, key, t_max=None, reduce=True):
  """DDPM ε-prediction loss E‖ε − ε_θ(x_t, t)‖² (Ho et al. Eq. 14; DIFF2 Eq. 3).

  t is drawn uniformly from the indices {0..t_max−1} (default: all T). Returns the batch mean of
  the per-example mean squared error, or the [B] vector when ``reduce`` is False.
  """
  t_max = schedule.num_timesteps if t_max is None else t_max
  k_t, k_n = jax.random.split(key)
  t = jax.random.randint(k_t, x0.shape[:1], 0, t_max).astype(jnp.float32)
  noise = jax.random.normal(k_n, x0.shape, jnp.float32)
  x_t = schedule.q_sample(x0, t, noise)
  err = jnp.mean((eps_fn(x_t, t).astype(jnp.float32) - noise) ** 2, axis=tuple(range(1, x0.ndim)))
  return jnp.mean(err) if reduce else err
