"""A DDPM on Fashion-MNIST (28×28 grey, zero-padded to 32 so the U-Net halves it twice): 64/128/128 channels, wide
enough that ⌊3 %·C⌋ ≥ 1 of every layer (Diff-Cleanse's pruning ratio) and ≥ 3 of the 128-wide ones.

  apt-get install dataset-fashion-mnist          # or --config.data.path=DIR with the four IDX files
  python launch/main.py --config=configs/ddpm_fashion_mnist.py --workdir=workdirs/ddpm_fashion_mnist

6.5M parameters; resumable; sample grids every 2,000 steps. Meant for a GPU: on 2 CPU cores a step of batch 128 takes
15 s (measured 2026-12-05), so 40,000 steps would take a week. Not yet trained to a shipped asset (issue #50): the
step count is a starting point, not a measured recipe.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "train_ddpm"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1, base_channels=64, channel_mults=(1, 2, 2), attention_resolutions=(8,),
                 layers_per_block=2, norm_num_groups=32, dropout=0.1)
  c.optim.update(lr=2e-4, warmup_steps=1000, grad_clip=1.0)
  c.train.update(num_steps=40_000, batch_size=128, ema_decay=0.999, log_every=100, checkpoint_every=1000,
                 sample_every=2000, num_samples=64, sample_sampler="ddim", sample_steps=100, grid_scale=3)
  return c
