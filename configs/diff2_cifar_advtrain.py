"""DIFF2's Table 9 on CIFAR-10: adversarially trained targets (PGD ℓ∞ 8/255, step 2/255, 8 steps; e.g.
``train_classifier`` with --config.train.adversarial.enabled=True), non-adaptive (standard ResNet-18 surrogate) and
adaptive (adversarially trained ResNet-18 surrogate, α = 0.2) DIFF2, untargeted and targeted. Besides what
configs/diff2_cifar.py fetches and trains, the adversarially trained ResNet-18 and ResNet-50 are trained as stages
(configs/classifier_cifar.py with train.adversarial.enabled=True); or pass exports:
--config.defense.advtrain_targets="('DIR18', 'DIR50')" --config.defense.adaptive_surrogates="('DIR18',)".
"""
from configs import default, diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=(), alpha=0.2)  # the paper's adaptive setting
  c.certify.n = 0
  default.add_defense(c, "advtrain")
  adv = default.CIFAR_SURROGATE + ":train.adversarial.enabled=True"
  c.defense.update(advtrain_targets=(adv, adv + ",model.name=resnet50"), adaptive_surrogates=(adv,))
  return c
