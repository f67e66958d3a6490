"""DIFF2 targeted (y* = 0, T-shirt/top) on Fashion-MNIST; the target-class ASR without purifier, through φ and φ*.

  python launch/main.py --config=configs/diff2_fashion_mnist_targeted.py --workdir=workdirs/diff2_fashion_mnist_targeted
"""
from configs import diff2_fashion_mnist


def get_config():
  c = diff2_fashion_mnist.get_config()
  c.diff2.update(targeted=True, target_class=0)
  return c
