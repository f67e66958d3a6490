"""DIFF2 on Fashion-MNIST (32-padded), the fields of configs/diff2_digits.py: trigger on a CNN surrogate, fine-tune of
the Fashion-MNIST DDPM into φ*, purification with the four samplers (4 network calls from t̄ = 75; the ODE 8),
PGD, certification on a small subset. The target is the shipped quarter-width ResNet-18; until issue #50 ships
the DDPM, it and the CNN surrogate (configs/classifier_fashion_mnist_cnn.py) are train: stages of the run (WORKDIR/models/; the DDPM
needs a GPU: 15 s per step on 2 CPU cores):

  apt-get install dataset-fashion-mnist
  python launch/main.py --config=configs/diff2_fashion_mnist.py --workdir=workdirs/diff2_fashion_mnist

α = 0.1 is a starting point between the paper's 0.05 and digits' 0.2, not a measured choice.
"""
from configs import default, purify_fashion_mnist

SURROGATE = "train:configs/classifier_fashion_mnist_cnn.py"


def get_config():
  c = purify_fashion_mnist.get_config()  # data, φ, f, the four samplers at t̄ = 75
  c.task = "diff2"
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
