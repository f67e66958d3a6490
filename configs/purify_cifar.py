"""DiffPure on CIFAR-10 (Nie et al. 2022 setting): t̄ = 75, ℓ∞ 8/255, PGD-20 and AutoAttack-rand.

Needs the DDPM checkpoint (diffusers folder of google/ddpm-cifar10-32) and a trained classifier export:
  --config.purify.denoiser=/path/ddpm-cifar10-32 --config.classifier.path=/path/resnet50_export
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "purification"
  default.add_evaluation(c, denoiser="", classifier="",  # required: see the docstring
                         samplers=("ddpm",), t_bar=75)
  c.attack.update(eot=20)
  c.eval.update(num_examples=512, stride=20, batch_size=64)
  return c
