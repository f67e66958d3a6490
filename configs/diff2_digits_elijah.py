"""DIFF2 §5.6 on digits: Elijah (trigger inversion from the noise end + random forest on uniformity and total
variation, leave-one-out) run on the population of configs/diff2_detect_digits.py, beside the entropy detector.
Run in the same workdir to reuse that population and its entropy measures:

  python launch/main.py --config=configs/diff2_digits_elijah.py --workdir=workdirs/diff2_detect_digits
"""
from configs import diff2_detect_digits


def get_config():
  c = diff2_detect_digits.get_config()
  c.defense.name = "elijah"
  return c
