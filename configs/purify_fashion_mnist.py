"""DiffPure on Fashion-MNIST (32-padded): clean and robust accuracy of f and f∘φ, PGD-10 (ε = 8/255, full gradient)
through every sampler (4 network calls from t̄ = 75; the ODE 8 Heun steps), AutoAttack-rand on --config.attack.
autoattack=True. f is the shipped quarter-width ResNet-18 (jaxdiff/assets/fashion_mnist/resnet18_quarter, made by
configs/classifier_fashion_mnist.py, 93.4 % test accuracy); φ is configs/ddpm_fashion_mnist.py, trained into
WORKDIR/models/ as a train: stage until #50 ships it (it needs a GPU: a week on 2 CPU cores).

  apt-get install dataset-fashion-mnist
  python launch/main.py --config=configs/purify_fashion_mnist.py --workdir=workdirs/purify_fashion_mnist
"""
from configs import default

DDPM = "train:configs/ddpm_fashion_mnist.py"
TARGET = "assets:fashion_mnist/resnet18_quarter"  # configs/classifier_fashion_mnist.py, 93.4 % test accuracy


def get_config():
  c = default.get_config()
  c.task = "purification"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1)
  default.add_evaluation(c, denoiser=DDPM, classifier=TARGET, samplers=("ddpm", "ddim", "sde", "ode"), t_bar=75,
                         num_steps=4)
  c.purify.sampler_steps.ode = 8
  c.attack.update(eps=8 / 255, pgd_steps=10, eot=1, autoattack=False, aa_steps=10, aa_targets=3, aa_queries=100)
  c.eval.update(num_examples=64, stride=156, batch_size=64)
  return c
