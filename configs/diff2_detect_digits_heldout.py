"""Does the entropy detector's digits threshold (2.03 nats, calibrated by configs/diff2_detect_digits.py on 100-step
fine-tunes at α = 0.2) hold for DIFF2 models made under other settings? Held-out benign (λ = 0) and untargeted φ*
at seeds the calibration never used: fine-tunes of 100, 300 (configs/diff2_digits.py's default) and 1,000 steps,
and α = 0.1 and 0.4 at 100 steps; one seed each. report.md gives TPR / FPR per setting.

  python launch/main.py --config=configs/diff2_detect_digits_heldout.py --workdir=workdirs/diff2_detect_digits_heldout
"""
from configs import default, diff2_detect_digits


def get_config():
  c = diff2_detect_digits.get_config()
  c.defense.update(population_benign=0, population_untargeted=0, population_targeted=0,
                   entropy_threshold=default.ENTROPY_THRESHOLD_DIGITS, heldout_seeds=1, heldout_steps=(100, 300, 1000),
                   heldout_alphas=(0.1, 0.4))
  return c
