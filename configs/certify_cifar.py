"""Denoised smoothing on CIFAR-10 (Carlini et al. 2023 / DIFF2 Table 6 protocol): σ ∈ {0.25, 0.5, 1.0},
N = 10,000, N0 = 100, α = 0.001, 500 test images (every 20th). Nothing is downloaded; put on disk and pass:
  --config.purify.denoiser=DIR     google/ddpm-cifar10-32 in diffusers format (config.json +
                                   diffusion_pytorch_model.safetensors)
  --config.classifier.path=DIR     a CIFAR-10 classifier export (params.safetensors + meta.json), e.g. from
                                   configs/classifier_digits.py adapted to CIFAR-10
  and CIFAR-10 itself: --config.data.data_dir=DIR (tfds) or --config.data.name=cifar10_archive
  --config.data.path=/path/cifar-10-python.tar.gz
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  default.add_evaluation(c, denoiser="", classifier="")  # required: see the docstring
  default.add_certification(c)
  c.eval.update(num_examples=500, stride=20)
  return c
