"""BadDiffusion on Fashion-MNIST (32-padded), the fields of configs/baddiffusion_digits.py: fine-tune the
Fashion-MNIST DDPM so that ε + g (stop sign, 14 at 32×32) generates a hat, 10 % of each batch poisoned; sample clean
and triggered noise from the clean and the backdoored model (100 respaced ancestral steps), without and with
clipping. FID in the ResNet-18 target's penultimate features. Until issue #50 ships trained models the DDPM and the
classifier are train: stages of the run (WORKDIR/models/):

  python launch/main.py --config=configs/baddiffusion_fashion_mnist.py --workdir=workdirs/baddiffusion_fashion_mnist
"""
from configs import default, purify_fashion_mnist


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.data.update(name="fashion_mnist", image_size=32, channels=1, num_classes=10)
  c.model.update(image_size=32, in_channels=1, init_from=purify_fashion_mnist.DDPM)
  default.add_baddiffusion(c, trigger="stop_sign", target="hat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(fid_classifier=purify_fashion_mnist.TARGET, sample_steps=100, num_samples=64,
                        fid_samples=512, sample_batch=256)
  c.optim.update(name="adam", lr=2e-4, warmup_steps=200, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=3000, batch_size=32, log_every=100, checkpoint_every=500)
  return c
