"""DIFF2 Alg. 2 with a blending trigger (procedural checkerboard, α = 0.2), reverse target x̃_r (Eq. 13)."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(trigger="blend", alpha=0.2, pattern="checkerboard", reverse_eps=0.1, reverse_steps=5)
  return c
