"""DiffPure on CIFAR-10 (Nie et al. 2022 setting): t̄ = 75, ℓ∞ 8/255, PGD-20 and AutoAttack-rand.

Fetches CIFAR-10 and google/ddpm-cifar10-32 and trains a ResNet-50 (configs/classifier_cifar.py) as a stage of
the run; or pass folders: --config.purify.denoiser=DIR --config.classifier.path=DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "purification"
  default.cifar_data(c)
  default.add_evaluation(c, denoiser=default.DDPM_CIFAR10, classifier=default.CIFAR_TARGET, samplers=("ddpm",),
                         t_bar=75)
  c.attack.update(eot=20)
  c.eval.update(num_examples=512, stride=20, batch_size=64)
  return c
