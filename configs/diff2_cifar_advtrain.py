"""DIFF2's Table 9 on CIFAR-10: adversarially trained targets (PGD ℓ∞ 8/255, step 2/255, 8 steps; e.g.
``train_classifier`` with --config.train.adversarial.enabled=True), non-adaptive (standard ResNet-18 surrogate) and
adaptive (adversarially trained ResNet-18 surrogate, α = 0.2) DIFF2, untargeted and targeted. Besides the files
of configs/diff2_cifar.py, put on disk the adversarially trained exports:

  python launch/main.py --config=configs/diff2_cifar_advtrain.py --workdir=workdirs/diff2_cifar_advtrain \
    --config.purify.denoiser=/data/ddpm-cifar10-32 --config.classifier.path=/data/classifiers/resnet50 \
    --config.diff2.surrogates="('/data/classifiers/resnet18',)" \
    --config.defense.advtrain_targets="('/data/classifiers/resnet18_adv', '/data/classifiers/resnet50_adv')" \
    --config.defense.adaptive_surrogates="('/data/classifiers/resnet18_adv',)" \
    --config.data.name=cifar10_archive --config.data.path=/data/cifar-10-python.tar.gz
"""
from configs import default, diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=(), alpha=0.2)  # the paper's adaptive setting
  c.certify.n = 0
  default.add_defense(c, "advtrain")  # required: defense.advtrain_targets and defense.adaptive_surrogates
  return c
