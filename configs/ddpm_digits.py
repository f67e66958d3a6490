"""The embedded default: a small DDPM on scikit-learn's digits (16×16 grey), minutes on a 2-core CPU.

  python launch/main.py --config=configs/ddpm_digits.py --workdir=workdirs/ddpm_digits

600 steps take ~8 min on a 2-core CPU. The shipped checkpoint jaxdiff/assets/digits/ddpm was made by
the same command with --config.train.num_steps=1000 (run 750 steps, killed, resumed to 1000).
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "train_ddpm"
  c.data.update(name="digits", image_size=16)
  c.model.update(image_size=16, in_channels=1, base_channels=32, channel_mults=(1, 2, 2),
                 attention_resolutions=(8,), layers_per_block=1, norm_num_groups=8, dropout=0.0)
  c.optim.update(lr=2e-3, warmup_steps=100, grad_clip=1.0)
  c.train.update(num_steps=600, batch_size=64, ema_decay=0.995, log_every=50, checkpoint_every=200,
                 sample_every=300, num_samples=64, sample_sampler="ddim", sample_steps=100, grid_scale=4)
  return c
