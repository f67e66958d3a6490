"""TrojDiff adapted to purification, patching scheme (§5.6, Eq. 14): a clean input diffused with the
trigger-shifted noise γε + r is reversed to its trigger input x_r. Same universal trigger as DIFF2."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(scheme="trojdiff_patch", trojdiff_gamma=0.6)
  return c
