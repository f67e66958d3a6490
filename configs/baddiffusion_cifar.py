"""BadDiffusion on CIFAR-10 with the paper's settings (Chou et al. 2023): fine-tune google/ddpm-cifar10-32,
batch 128, 50 epochs, Adam 2e-4 with 500 warm-up steps and cosine decay, grad clip 1, poison rate 0.1,
stop sign (14) → hat; 10K triggered samples for MSE/SSIM/ASR and 10K clean samples for the FID against
the 50K training images (Inception-v3 pool3), ancestral DDPM with every step, with and without clipping;
inpainting of 1,000 corrupted test images (blur / line / box, App. C).
Fetches CIFAR-10, google/ddpm-cifar10-32 (hub) and pytorch-fid's Inception weights (its release file, hash
recorded on first download); or pass --config.model.init_from=DIR --config.baddiffusion.inception_weights=FILE.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  default.cifar_data(c)
  c.model.update(init_from=default.DDPM_CIFAR10)
  default.add_baddiffusion(c, trigger="stop_sign", target="hat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(num_samples=10_000, fid_samples=10_000, sample_batch=1000, fid_features="inception",
                        inception_weights=default.INCEPTION_FID,
                        inpainting=("blur", "line", "box"), inpainting_samples=1000)  # App. C
  c.optim.update(name="adam", lr=2e-4, warmup_steps=500, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=50 * 50_000 // 128, batch_size=128, log_every=100, checkpoint_every=1000)
  return c
