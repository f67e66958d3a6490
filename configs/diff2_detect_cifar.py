"""DIFF2's entropy-based detection (§5.7, Figures 9–10) on CIFAR-10: the paper's measurement — clean test
images diffused to t = T = 1000 and reversed by the full 1000-step DDPM, classified by the target ResNet-50,
5 trials × 100 inputs per model — over 10 benign fine-tunes (clean loss only) and 10 DIFF2 φ* (5 untargeted,
5 targeted), 2,000 fine-tuning steps each (batch 256, ≈ 10 epochs). The paper's threshold is ≈ 2.2 nats;
``defense.entropy_threshold = 0`` calibrates it on the population instead (leave-one-out accuracy reported).
The files to put on disk are those of configs/diff2_cifar.py:

  python launch/main.py --config=configs/diff2_detect_cifar.py --workdir=workdirs/diff2_detect_cifar \
    --config.purify.denoiser=/data/ddpm-cifar10-32 --config.classifier.path=/data/classifiers/resnet50 \
    --config.diff2.surrogates="('/data/classifiers/resnet18',)" \
    --config.data.name=cifar10_archive --config.data.path=/data/cifar-10-python.tar.gz
"""
from configs import default, diff2_cifar


def get_config():
  c = diff2_cifar.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.diff2.update(sweep_t_bar=())
  c.certify.n = 0
  c.attack.update(pgd_steps=0, autoattack=False)  # rows: each model's clean ACC and own-trigger ASR
  default.add_defense(c, "entropy")
  c.defense.update(population_steps=2000, entropy_steps=1000)
  return c
