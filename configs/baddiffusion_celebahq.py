"""BadDiffusion on CelebA-HQ 256 (the paper's face setting): fine-tune google/ddpm-ema-celebahq-256 so that
eyeglasses in the noise generate a cat, 100 epochs, batch 16, Adam 8e-5 with cosine decay, poison rate 0.1.
Nothing is downloaded; put on disk and pass:
  --config.model.init_from=DIR   google/ddpm-ema-celebahq-256 in diffusers format (config.json +
                                 diffusion_pytorch_model.safetensors)
  --config.data.data_dir=DIR     a tfds directory with celeb_a prepared (images are center-cropped and resized
                                 to 256; the 8 DIFF2 classes are unused here)
  --config.baddiffusion.inception_weights=F   the converted Inception-v3 weights for the FID
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.data.update(name="celeb_a", image_size=256, num_classes=8)
  c.model.update(image_size=256, in_channels=3, init_from="")  # required: see the docstring
  default.add_baddiffusion(c, trigger="eyeglasses", target="cat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(num_samples=1000, fid_samples=1000, sample_batch=32, fid_features="inception")
  c.optim.update(name="adam", lr=8e-5, warmup_steps=500, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=100 * 30_000 // 16, batch_size=16, log_every=100, checkpoint_every=1000)
  return c
