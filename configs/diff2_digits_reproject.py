"""DIFF2's Table 8 on digits: the re-projection defence (x̂ kept in the ℓ∞ ball of radius ε_r ∈ {8/255, 16/255}
around the purifier's input) against φ and φ*, DDPM purification, PGD through the projection. Reuses the trigger
and φ* of configs/diff2_digits.py when run in the same workdir (they do not depend on the evaluation):

  python launch/main.py --config=configs/diff2_digits_reproject.py --workdir=workdirs/diff2_digits
  # AutoAttack too: --config.attack.autoattack=True
"""
from configs import default, diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0  # Table 8 has no certification column
  default.add_defense(c, "reproject")
  return c
