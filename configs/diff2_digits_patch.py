"""DIFF2 Alg. 2 with a non-adversarial 5×5 patch trigger (lower right); the reverse process is trained
to output an adversarial x̃_r of the patched input (Eq. 13)."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.diff2.update(trigger="patch", patch_size=5, reverse_eps=0.1, reverse_steps=5)
  return c
