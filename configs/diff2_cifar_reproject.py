"""DIFF2's Table 8 on CIFAR-10: re-projection (ε_r ∈ {8/255, 16/255}) against φ and φ*, DDPM purification, PGD
and AutoAttack through the projection; the files to put on disk are those of configs/diff2_cifar.py."""
from configs import default, diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  default.add_defense(c, "reproject")
  return c
