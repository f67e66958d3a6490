"""DIFF2 on CIFAR-10 with the paper's defaults (Table 21): surrogate ResNet-18, target ResNet-50,
α = 0.05, trigger Adam 0.1, fine-tune Adam 2e-4, batch 256, 20 epochs, truncated timestep 300, t̄ = 75.

On a machine with internet, one command does everything, each stage resumable:
  python launch/main.py --config=configs/diff2_cifar.py --workdir=workdirs/diff2_cifar
fetches CIFAR-10 (the binary archive, 163 MB, sha256-pinned) and google/ddpm-cifar10-32 from the hub (143 MB),
trains the ResNet-18 surrogate and the ResNet-50 target (configs/classifier_cifar.py, into WORKDIR/models/),
optimises the trigger, fine-tunes, evaluates with every sampler and certifies. Any model field also takes a
folder: --config.classifier.path=DIR --config.diff2.surrogates="('DIR',)" --config.purify.denoiser=DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "diff2"
  default.cifar_data(c)
  default.add_evaluation(c, denoiser=default.DDPM_CIFAR10, classifier=default.CIFAR_TARGET,
                         samplers=("ddpm", "ddim", "sde", "ode"), t_bar=75)
  default.add_certification(c, sigmas=(0.5,), n=10_000, n0=100)
  c.certify.update(radii=(0.5, 1.0), num_images=500)
  default.add_diff2(c, surrogates=(default.CIFAR_SURROGATE,))
  c.diff2.update(trigger_steps=1000, sweep_t_bar=(25, 50, 75, 100, 125),
                 transfer_classifiers=())  # Table 3: --config.diff2.transfer_classifiers="('DIR/densenet121', ...)"
  c.optim.update(lr=2e-4, warmup_steps=0, grad_clip=1.0)
  c.train.update(num_steps=20 * 50_000 // 256, batch_size=256, log_every=50, checkpoint_every=500)
  c.attack.update(pgd_steps=20, eot=20, autoattack=True, autoattack_version="rand")  # Table 2: PGD and AutoAttack
  c.eval.update(num_examples=512, stride=20, batch_size=64, robust_examples=512, grid_scale=4)
  c.purify.update(one_step=True)
  return c
