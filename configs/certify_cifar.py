"""Denoised smoothing on CIFAR-10 (Carlini et al. 2023 / DIFF2 Table 6 protocol): σ ∈ {0.25, 0.5, 1.0},
N = 10,000, N0 = 100, α = 0.001, 500 test images (every 20th). Needs the DDPM and a classifier:
  --config.purify.denoiser=/path/ddpm-cifar10-32 --config.classifier.path=/path/classifier_export
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  default.add_evaluation(c, denoiser="/data/ddpm-cifar10-32", classifier="/data/classifiers/resnet50")
  default.add_certification(c)
  c.eval.update(num_examples=500, stride=20)
  return c
