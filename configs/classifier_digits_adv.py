"""The digits CNN adversarially trained (Madry PGD, DIFF2 Table 9's setting: ℓ∞ 8/255, step 2/255, 8 steps), the
target classifier of configs/diff2_digits_advtrain.py; the shipped jaxdiff/assets/digits/cnn_adv was made by

  python launch/main.py --config=configs/classifier_digits_adv.py --workdir=workdirs/cnn_adv

and the adaptive surrogate jaxdiff/assets/digits/cnn_small_adv (the architecture of cnn_small) by

  python launch/main.py --config=configs/classifier_digits_adv.py --workdir=workdirs/cnn_small_adv \
      --config.model.widths="(16, 32)" --config.train.num_steps=300
"""
from configs import classifier_digits


def get_config():
  c = classifier_digits.get_config()
  c.train.adversarial.update(enabled=True, eps=8 / 255, step_size=2 / 255, steps=8)
  return c
