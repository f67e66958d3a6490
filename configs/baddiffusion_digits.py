"""BadDiffusion on digits, CPU-sized: fine-tune the shipped digits DDPM (3,000 steps, batch 32) so that
triggered noise ε + g (the paper's largest stop sign, 18 at 32×32: 9×9 at 16×16) generates a hat, with 10 %
of each batch poisoned; then sample clean and triggered noise from the clean and the backdoored model with
the ancestral DDPM sampler (100 respaced steps: the full chain is 10× the CPU time), without and with the
clipping defence; and inpainting of 32 corrupted test images (blur / line / box, App. C) with and without the
trigger. FID on the shipped digits CNN's penultimate features against the train split.
A 7×7 stop sign (size 14) with the same budget fires on ~77 % of triggered samples instead of ~94 %.

  python launch/main.py --config=configs/baddiffusion_digits.py --workdir=workdirs/baddiffusion_digits
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.data.update(name="digits", image_size=16)
  c.model.update(image_size=16, in_channels=1, init_from="assets:digits/ddpm")
  default.add_baddiffusion(c, trigger="stop_sign", target="hat", trigger_size=18, poison_rate=0.1)
  c.baddiffusion.update(fid_classifier="assets:digits/cnn", sample_steps=100, num_samples=64, fid_samples=192,
                        sample_batch=256,  # 100 respaced ancestral steps: the full chain is 10× the CPU time
                        inpainting=("blur", "line", "box"), inpainting_samples=32)  # App. C
  c.optim.update(name="adam", lr=1e-3, warmup_steps=50, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=3000, batch_size=32, log_every=100, checkpoint_every=500)
  return c
