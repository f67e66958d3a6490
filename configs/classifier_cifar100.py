"""A CIFAR-100 classifier with the recipe of configs/classifier_cifar.py (ResNet-18, SGD 0.1, momentum 0.9, weight
decay 5e-4, cosine, crop + flip, 200 epochs; published test accuracy ≈ 76–78 % for ResNet-18)."""
from configs import classifier_cifar


def get_config():
  return classifier_cifar.get_config("cifar100")
