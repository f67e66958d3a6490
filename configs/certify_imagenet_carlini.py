"""Carlini et al. 2023 on ImageNet: denoised smoothing with guided diffusion's 256 × 256 unconditional U-Net
(linear schedule, 1,000 steps, learned σ: its ε half denoises in one shot) and a classifier at its own resolution
(the 256 × 256 images are resized inside it). σ ∈ {0.25, 0.5, 1.0}, N = 10,000, N0 = 100, α = 0.001, 500
validation images (every 100th).

Carlini et al.'s classifier is BEiT-L/16 at 512, which jaxdiff cannot import yet: use a timm ViT (e.g. ViT-B/16 at
224, ImageNet-trained) until it can. The U-Net, 256x256_diffusion_uncond.pt, is fetched from OpenAI's address and
converted once (torch's weights-only loader). Put on disk and convert once:
  a timm ImageNet ViT (model.safetensors)          python launch/convert.py --kind=timm --src=FILE --dst=VIT_DIR \\
                                                     --image_size=256 [--normalize=imagenet for DeiT-style models]
  ImageNet's validation set prepared for tfds      (tfds imagenet2012 with manual_dir, array_record format)
then pass --config.classifier.path=VIT_DIR --config.data.data_dir=TFDS_DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  c.data.update(name="imagenet2012", image_size=256, num_classes=1000)
  default.add_evaluation(c, denoiser=default.ADM_IMAGENET256, classifier="")  # classifier: see the docstring
  default.add_certification(c, sigmas=(0.25, 0.5, 1.0), n=10_000, n0=100, alpha=0.001, num_classes=1000)
  c.certify.batch_size = 250
  c.eval.update(num_examples=500, stride=100)
  return c
