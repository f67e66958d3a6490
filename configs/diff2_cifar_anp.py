"""DIFF2's Appendix C.1 (Fig. 11) on CIFAR-10: ANP on the targeted φ*, learning rates 1e-5 … 2e-4, ε_ANP 0.4,
masks fitted on 2,000 clean batches of 128, channels with a mask < 0.2 pruned; the files to put on disk are those
of configs/diff2_cifar.py."""
from configs import default, diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=(), targeted=True)
  c.certify.n = 0
  c.attack.update(pgd_steps=0, autoattack=False)
  default.add_defense(c, "anp")
  c.defense.update(anp_iterations=2000, anp_batch=128)
  return c
