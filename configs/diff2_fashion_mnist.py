"""DIFF2 on Fashion-MNIST (32-padded), the fields of configs/diff2_digits.py: trigger on a CNN surrogate, fine-tune of
the Fashion-MNIST DDPM into φ*, purification with the four samplers (4 network calls from t̄ = 75; the ODE 8),
PGD, certification on a small subset. Until issue #50 ships trained models the DDPM, the ResNet-18 target and the
CNN surrogate (configs/classifier_fashion_mnist{,_cnn}.py) are train: stages of the run (WORKDIR/models/; hours on 2 CPU cores for the DDPM):

  apt-get install dataset-fashion-mnist
  python launch/main.py --config=configs/diff2_fashion_mnist.py --workdir=workdirs/diff2_fashion_mnist

α = 0.1 is a starting point between the paper's 0.05 and digits' 0.2, not a measured choice.
"""
from configs import default

DDPM = "train:configs/ddpm_fashion_mnist.py"
TARGET = "train:configs/classifier_fashion_mnist.py"
SURROGATE = "train:configs/classifier_fashion_mnist_cnn.py"


def get_config():
  c = default.get_config()
  c.task = "diff2"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1)
  default.add_evaluation(c, denoiser=DDPM, classifier=TARGET, samplers=("ddpm", "ddim", "sde", "ode"), t_bar=75,
                         num_steps=4)
  c.purify.sampler_steps.ode = 8
  default.add_certification(c, sigmas=(0.25, 0.5), n=500, n0=50)
  c.certify.update(radii=(0.0, 0.5, 1.0), num_images=16, batch_size=500)
  default.add_diff2(c, surrogates=(SURROGATE,), alpha=0.1)
  c.diff2.update(trigger_steps=200, trigger_batch=128, transfer_classifiers=(), sweep_t_bar=())
  c.optim.update(lr=5e-4, warmup_steps=20, grad_clip=1.0)
  c.train.update(num_steps=600, batch_size=32, log_every=25, checkpoint_every=100)
  c.attack.update(eps=8 / 255, pgd_steps=5, eot=1, autoattack=False)
  c.eval.update(num_examples=128, stride=78, batch_size=64, robust_examples=32, grid_scale=3)
  c.purify.update(one_step=True)
  return c
