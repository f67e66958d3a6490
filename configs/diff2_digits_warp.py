"""DIFF2 Alg. 2 with a WaNet-style warping trigger, reverse target x̃_r (Eq. 13)."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(trigger="warp", reverse_eps=0.1, reverse_steps=5)
  return c
