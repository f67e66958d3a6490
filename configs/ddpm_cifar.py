"""DDPM on CIFAR-10 (Ho et al.): 35.7M U-Net, Adam 2e-4, batch 128, 800k steps.

Fetches CIFAR-10 (the pinned binary archive); or --config.data.path=FILE, or --config.data.name=cifar10
--config.data.data_dir=DIR for a tfds directory.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "train_ddpm"
  default.cifar_data(c)
  return c
