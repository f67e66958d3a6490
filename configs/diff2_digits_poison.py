"""Poisoning-based DIFF2: only the fine-tuning data is polluted (rate 2%), plain DDPM loss."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(poison_rate=0.02)
  return c
