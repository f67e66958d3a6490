"""BadDiffusion on CIFAR-10 with the paper's settings (Chou et al. 2023): fine-tune google/ddpm-cifar10-32,
batch 128, 50 epochs, Adam 2e-4 with 500 warm-up steps and cosine decay, grad clip 1, poison rate 0.1,
stop sign (14) → hat; 10K triggered samples for MSE/SSIM/ASR and 10K clean samples for the FID against
the 50K training images (Inception-v3 pool3), ancestral DDPM with every step, with and without clipping;
inpainting of 1,000 corrupted test images (blur / line / box, App. C).
Nothing is downloaded; put on disk and pass:
  --config.model.init_from=DIR              google/ddpm-cifar10-32 in diffusers format (config.json +
                                            diffusion_pytorch_model.safetensors)
  --config.baddiffusion.inception_weights=F pytorch-fid's pt_inception-2015-12-05 weights converted to
                                            safetensors (see README "BadDiffusion"); or
                                            --config.baddiffusion.fid_features=classifier with a classifier export
  and CIFAR-10: --config.data.data_dir=DIR (tfds) or --config.data.name=cifar10_archive
  --config.data.path=/path/cifar-10-python.tar.gz
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "baddiffusion"
  c.model.update(init_from="")  # required: see the docstring
  default.add_baddiffusion(c, trigger="stop_sign", target="hat", trigger_size=14, poison_rate=0.1)
  c.baddiffusion.update(num_samples=10_000, fid_samples=10_000, sample_batch=1000, fid_features="inception",
                        inpainting=("blur", "line", "box"), inpainting_samples=1000)  # App. C
  c.optim.update(name="adam", lr=2e-4, warmup_steps=500, decay="cosine", grad_clip=1.0)
  c.train.update(num_steps=50 * 50_000 // 128, batch_size=128, log_every=100, checkpoint_every=1000)
  return c
