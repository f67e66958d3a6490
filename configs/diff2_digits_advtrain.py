"""DIFF2's Table 9 on digits: DIFF2 against an adversarially trained target classifier (jaxdiff/assets/digits/
cnn_adv, PGD ℓ∞ 8/255 adversarial training, configs/classifier_digits_adv.py), non-adaptive (trigger optimised on
the standard cnn_small) and adaptive (trigger optimised on the adversarially trained cnn_small_adv), untargeted and
targeted; every φ / φ* judged by the standard cnn and by cnn_adv, DDPM purification at t̄ = 75. Four DIFF2
sub-runs (settings of configs/diff2_digits.py) in WORKDIR/<attack>_<mode>/:

  python launch/main.py --config=configs/diff2_digits_advtrain.py --workdir=workdirs/diff2_digits_advtrain
"""
from configs import default, diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  default.add_defense(c, "advtrain")
  c.defense.update(advtrain_targets=("assets:digits/cnn_adv",), adaptive_surrogates=("assets:digits/cnn_small_adv",))
  return c
