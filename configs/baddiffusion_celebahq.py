"""BadDiffusion on CelebA-HQ 256 (the paper's face setting): fine-tune google/ddpm-ema-celebahq-256 so that
eyeglasses in the noise generate a cat, 100 epochs, batch 16, Adam 8e-5 with cosine decay, poison rate 0.1.
Fetches google/ddpm-ema-celebahq-256 (hub) and the FID's Inception weights; tfds prepares CelebA where it can
(CelebA's own download is often refused: then prepare it by hand) and reads it from
  --config.data.data_dir=DIR     a tfds directory with celeb_a prepared (images are center-cropped and resized
                                 to 256; the 8 DIFF2 classes are unused here)
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.data.update(name="celeb_a", image_size=256, num_classes=8)
  c.model.update(image_size=256, in_channels=3, init_from="hf:google/ddpm-ema-celebahq-256")
  default.add_baddiffusion(c, trigger="eyeglasses", target="cat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(num_samples=1000, fid_samples=1000, sample_batch=32, fid_features="inception",
                        inception_weights=default.INCEPTION_FID)
  c.optim.update(name="adam", lr=8e-5, warmup_steps=500, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=100 * 30_000 // 16, batch_size=16, log_every=100, checkpoint_every=1000)
  return c
