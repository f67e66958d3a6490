"""DDPM on CIFAR-10 (Ho et al.): 35.7M U-Net, Adam 2e-4, batch 128, 800k steps.

Needs CIFAR-10 offline: --config.data.data_dir=DIR (tfds array_record) or
--config.data.name=cifar10_archive --config.data.path=/path/cifar-10-python.tar.gz
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "train_ddpm"
  return c
