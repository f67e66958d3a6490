"""Carlini et al. 2023, "(Certified!!) Adversarial Robustness for Free!", on CIFAR-10: denoised smoothing with the
improved-diffusion 50M U-Net (cosine schedule, 4,000 steps, learned σ: the ε half denoises in one shot from the
t* with ᾱ_t* = 1/(1 + 4σ²)) and a ViT-B/16 at 224 × 224 (the 32 × 32 images are resized inside the classifier).
σ ∈ {0.25, 0.5, 1.0}, N = 100,000, N0 = 100, α = 0.001, 500 test images (every 20th).

Fetches CIFAR-10 and the improved-diffusion checkpoint cifar10_uncond_50M_500K.pt from OpenAI's address (converted
once, read with torch's weights-only loader). The classifier has no published CIFAR-10 fine-tune: convert one once,
  a timm ViT-B/16 fine-tuned on CIFAR-10 at 224        python launch/convert.py --kind=timm --src=model.safetensors \\
  (timm / Hugging Face model.safetensors)               --dst=VIT_DIR
and pass --config.classifier.path=VIT_DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  default.cifar_data(c)
  default.add_evaluation(c, denoiser=default.ADM_CIFAR10, classifier="")  # classifier required: see the docstring
  c.purify.diffusion.update(schedule="cosine", num_timesteps=4000)
  default.add_certification(c, sigmas=(0.25, 0.5, 1.0), n=100_000, n0=100, alpha=0.001)
  c.eval.update(num_examples=500, stride=20)
  return c
