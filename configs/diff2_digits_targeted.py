"""DIFF2 targeted (y* = 0) on digits."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(targeted=True, target_class=0)
  return c
