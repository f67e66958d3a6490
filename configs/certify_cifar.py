"""Denoised smoothing on CIFAR-10 (Carlini et al. 2023 / DIFF2 Table 6 protocol): σ ∈ {0.25, 0.5, 1.0},
N = 10,000, N0 = 100, α = 0.001, 500 test images (every 20th). Fetches CIFAR-10 and google/ddpm-cifar10-32 and
trains a ResNet-50 (configs/classifier_cifar.py) as a stage; or pass folders: --config.purify.denoiser=DIR
--config.classifier.path=DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  default.cifar_data(c)
  default.add_evaluation(c, denoiser=default.DDPM_CIFAR10, classifier=default.CIFAR_TARGET)
  default.add_certification(c)
  c.eval.update(num_examples=500, stride=20)
  return c
