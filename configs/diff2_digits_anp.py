"""DIFF2's Appendix C.1 (Fig. 11) on digits: Adversarial Neuron Pruning of φ*, masks fitted on 100 clean batches
of 32 with ε_ANP = 0.4, channels with a mask < 0.2 pruned, for each ANP learning rate; clean ACC and trigger ASR of
f∘φ*_pruned, DDPM purification. Reuses the trigger and φ* of configs/diff2_digits.py in the same workdir:

  python launch/main.py --config=configs/diff2_digits_anp.py --workdir=workdirs/diff2_digits

The paper prunes the *targeted* φ*; on digits the targeted trigger optimised on cnn_small does not transfer to the
target cnn (target-class ASR 3.3 % without purifier and through φ*, configs/diff2_digits_targeted.py), so there
is no targeted backdoor to remove and this config prunes the untargeted φ* (ASR ≈ 80 %). Rates: the paper's
(1e-5 … 2e-4) and up to ANP's own classifier rate (0.2) and beyond; figure11.png plots them.
"""
from configs import default, diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  c.attack.pgd_steps = 0  # Fig. 11 plots ASR and clean ACC
  default.add_defense(c, "anp")
  c.defense.anp_lrs = (1e-5, 2e-4, 0.01, 0.1, 0.2, 0.5, 1.0)
  return c
