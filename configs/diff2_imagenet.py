"""DIFF2 on ImageNet 256 × 256 (Table 10): guided diffusion's unconditional U-Net as the pretrained purifier, the
settings of §4 (untargeted, α = 0.05, ResNet-18 surrogate, truncated timestep 300, λ = 1, t̄ = 75), clean ACC and
ASR on target classifiers (Table 10: ResNet-50, DenseNet-121, DLA-34, ViT via diff2.transfer_classifiers).
The paper does not give ImageNet's fine-tuning length or batch: 5,000 steps of batch 32 here (an assumption).
The learned-σ half of the U-Net's output is left as pretrained (the ε loss trains the ε half only) and the DDPM
steps use it.

The U-Net (256x256_diffusion_uncond.pt) is fetched from OpenAI's address and converted once. Put on disk (see
configs/certify_imagenet_carlini.py for the conversions):
  --config.classifier.path=DIR --config.diff2.surrogates="('DIR/resnet18',)"   (ImageNet classifier exports)
  --config.data.data_dir=TFDS_DIR (imagenet2012 prepared for tfds: train and validation splits)
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "diff2"
  c.data.update(name="imagenet2012", image_size=256, num_classes=1000)
  default.add_evaluation(c, denoiser=default.ADM_IMAGENET256, classifier="", samplers=("ddpm",), t_bar=75)  # classifier: see above
  c.purify.ddpm_variance = "learned"
  default.add_certification(c, n=0, num_classes=1000)  # Table 10 reports no certification
  default.add_diff2(c, surrogates=())
  c.diff2.update(trigger_steps=1000, trigger_batch=32, sweep_t_bar=(), transfer_classifiers=())
  c.optim.update(lr=2e-4, warmup_steps=0, grad_clip=1.0)
  c.train.update(num_steps=5000, batch_size=32, log_every=50, checkpoint_every=500)
  c.attack.update(pgd_steps=20, eot=20, autoattack=False)
  c.eval.update(num_examples=512, stride=97, batch_size=16, robust_examples=0)
  return c
