"""BadDiffusion on digits, CPU-sized: fine-tune the shipped digits DDPM so that triggered noise ε + g (a
stop sign, 7×7 at 16×16) generates a hat, with 10 % of each batch poisoned; then sample clean and triggered
noise from the clean and the backdoored model with the ancestral DDPM sampler (every index), without and
with the clipping defence. FID on the shipped digits CNN's penultimate features against the train split.

  python launch/main.py --config=configs/baddiffusion_digits.py --workdir=workdirs/baddiffusion_digits
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.data.update(name="digits", image_size=16)
  c.model.update(image_size=16, in_channels=1, init_from="assets:digits/ddpm")
  default.add_baddiffusion(c, trigger="stop_sign", target="hat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(fid_classifier="assets:digits/cnn", num_samples=64, fid_samples=256, sample_batch=256)
  c.optim.update(name="adam", lr=5e-4, warmup_steps=50, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=1000, batch_size=32, log_every=50, checkpoint_every=250)
  return c
