"""DIFF2's entropy detector (§5.7) on Fashion-MNIST: a population of benign and DIFF2 fine-tunes of the Fashion-MNIST
DDPM (5 benign, 3 untargeted, 2 targeted, 100 steps each) calibrates the threshold; held-out models at other seeds,
fine-tune lengths (100 / 300 / 1,000 steps) and α (0.05, 0.2) are judged with it (TPR / FPR per setting).

  python launch/main.py --config=configs/diff2_detect_fashion_mnist.py --workdir=workdirs/diff2_detect_fashion_mnist
"""
from configs import default, diff2_fashion_mnist


def get_config():
  c = diff2_fashion_mnist.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  c.attack.pgd_steps = 0
  default.add_defense(c, "entropy")
  c.defense.update(population_benign=5, population_untargeted=3, population_targeted=2, heldout_seeds=1,
                   heldout_steps=(100, 300, 1000), heldout_alphas=(0.05, 0.2))
  return c
