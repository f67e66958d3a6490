"""DiffPure on ImageNet (Nie et al. 2022): guided diffusion's 256 × 256 unconditional U-Net, t̄ = 150 (t* = 0.15),
ℓ∞ 4/255, PGD-20 and AutoAttack-rand with EOT 20 through the full gradient, 512 validation images (every 97th).
The ancestral sampler uses the model's learned variance; the SDE sampler its ε half.

The U-Net (256x256_diffusion_uncond.pt) is fetched from OpenAI's address and converted once. Put on disk:
  the classifier                 a timm ViT / DeiT (DiffPure's DeiT-S: --normalize=imagenet) converted with
                                  python launch/convert.py --kind=timm --src=FILE --dst=CLS_DIR --image_size=256
then --config.classifier.path=CLS_DIR --config.data.data_dir=TFDS_DIR.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "purification"
  c.data.update(name="imagenet2012", image_size=256, num_classes=1000)
  default.add_evaluation(c, denoiser=default.ADM_IMAGENET256, classifier="",  # classifier: see the docstring
                         samplers=("ddpm", "sde"), t_bar=150)
  c.purify.ddpm_variance = "learned"
  c.attack.update(eps=4 / 255, eot=20, autoattack_version="rand")
  c.eval.update(num_examples=512, stride=97, batch_size=16)
  return c
