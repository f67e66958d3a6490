"""TrojDiff adapted to purification, adversarial scheme (§5.6, Eq. 14): a trigger input diffused with
γε + r is reversed to itself (ε* = ε). Same universal trigger as DIFF2."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(scheme="trojdiff_adversarial", trojdiff_gamma=0.6)
  return c
