"""DIFF2 with input-specific triggers (§5.5, Table 19): every input gets its own r, optimised by
10-step PGD against the surrogate, during fine-tuning and at evaluation; no universal trigger."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(trigger="input_specific", input_specific_steps=10)
  return c
