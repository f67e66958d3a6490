"""DIFF2 §5.6 on CIFAR-10: Elijah on the population of configs/diff2_detect_cifar.py (same workdir reuses it),
with Elijah's defaults (λ 0.5, Adam 0.1, 100 iterations); the files to put on disk are those of
configs/diff2_cifar.py."""
from configs import diff2_detect_cifar


def get_config():
  c = diff2_detect_cifar.get_config()
  c.defense.update(name="elijah", elijah_batch=100, elijah_steps=1000)
  return c
