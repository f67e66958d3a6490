"""Denoised smoothing on Fashion-MNIST (32-padded): certified accuracy at σ ∈ {0.25, 0.5}, N = 1,000 draws on 40 test
images per σ; φ and f as in configs/purify_fashion_mnist.py (train: stages until #50 ships them).

  python launch/main.py --config=configs/certify_fashion_mnist.py --workdir=workdirs/certify_fashion_mnist
"""
from configs import default, purify_fashion_mnist


def get_config():
  c = default.get_config()
  c.task = "certify"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1)
  default.add_evaluation(c, denoiser=purify_fashion_mnist.DDPM, classifier=purify_fashion_mnist.TARGET)
  default.add_certification(c, sigmas=(0.25, 0.5), n=1000, n0=100)
  c.certify.batch_size = 500
  c.eval.update(num_examples=40, stride=250)
  return c
