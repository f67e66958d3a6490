"""DIFF2's entropy-based detection (§5.7, Figures 9–10) on digits: the shipped φ, 10 benign fine-tunes (clean
loss only) and 10 backdoored φ* (5 untargeted, 5 targeted; DIFF2 settings of configs/diff2_digits.py), 100
fine-tuning steps each; reference test digits diffused to t = T = 1000 and reversed by DDPM in 20 steps, 5 trials
× 100 inputs per model; threshold calibrated on the population (leave-one-out accuracy reported beside it).

  python launch/main.py --config=configs/diff2_detect_digits.py --workdir=workdirs/diff2_detect_digits
"""
from configs import default, diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  c.attack.pgd_steps = 0  # the rows give each model's clean ACC and own-trigger ASR; no robust ACC
  default.add_defense(c, "entropy")
  return c
