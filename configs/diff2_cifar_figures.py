"""DIFF2 Figures 4–6 on CIFAR-10 (paper: α 0.02–0.1, trigger 16×16–32×32, t̄ 25–125), DDPM purification.
Each α or trigger size other than the default is a full 20-epoch fine-tuning run: budget ~9× diff2_cifar."""
from configs import diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.certify.n = 0
  c.diff2.update(sweep_alpha=(0.02, 0.04, 0.05, 0.06, 0.08, 0.1), sweep_trigger_size=(16, 20, 24, 28, 32))
  return c
