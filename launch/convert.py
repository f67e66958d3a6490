"""Converts a downloaded PyTorch checkpoint once into a jaxdiff export folder (params.safetensors + meta.json) that
configs take as ``config.purify.denoiser`` or ``config.classifier.path``. Pickled .pt files are read only with
torch's weights-only loader; nothing is downloaded.

  python launch/convert.py --kind=openai --preset=cifar10_uncond_50M_500K --src=cifar10_uncond_50M_500K.pt --dst=DIR
  python launch/convert.py --kind=openai --preset=256x256_diffusion_uncond --src=256x256_diffusion_uncond.pt --dst=DIR
  python launch/convert.py --kind=openai --src=model.pt --dst=DIR --create_model='{"image_size": 64, ...}'
  python launch/convert.py --kind=timm --src=model.safetensors --dst=DIR [--image_size=32] [--normalize=imagenet]

Exit status 2: the input was refused (missing file, tensors that do not match, a pickle that would run code).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("kind", None, ["openai", "timm"], "openai: improved/guided-diffusion U-Net (a denoiser); timm: a "
                  "VisionTransformer (a classifier).")
flags.DEFINE_string("src", None, "The downloaded checkpoint (.pt / .pth / .safetensors).")
flags.DEFINE_string("dst", None, "The export folder to write.")
flags.DEFINE_string("preset", "", "openai: create_model arguments of a public checkpoint (models.adm."
                    "PUBLIC_CHECKPOINTS).")
flags.DEFINE_string("create_model", "", "openai: create_model keyword arguments as JSON (override the preset).")
flags.DEFINE_integer("image_size", 32, "timm: the size of the images the classifier will be given (resized inside "
                     "to the checkpoint's resolution).")
flags.DEFINE_enum("normalize", "inception", ["inception", "imagenet"], "timm: the input normalisation the "
                  "checkpoint was trained with: inception (mean = std = 0.5, timm's ViT augreg) or imagenet "
                  "(0.485/0.229 ..., DeiT and torchvision-style models).")
flags.mark_flags_as_required(["kind", "src", "dst"])


def main(argv):
  del argv
  from jaxdiff.errors import UserError
  from jaxdiff.models.adm import PUBLIC_CHECKPOINTS
  f = flags.FLAGS
  try:
    if f.kind == "openai":
      from jaxdiff.convert import export_openai_unet
      if f.preset and f.preset not in PUBLIC_CHECKPOINTS:
        raise UserError(f"--preset={f.preset!r}: choose one of {sorted(PUBLIC_CHECKPOINTS)} or pass --create_model")
      try:
        kw = {**PUBLIC_CHECKPOINTS.get(f.preset, {}), **(json.loads(f.create_model) if f.create_model else {})}
      except (json.JSONDecodeError, TypeError) as e:
        raise UserError(f"--create_model must be a JSON object of create_model arguments ({e})") from e
      if not kw:
        raise UserError("--kind=openai needs --preset or --create_model (the checkpoint's create_model arguments)")
      import inspect

      from jaxdiff.models.adm import create_model_config
      unknown = set(kw) - set(inspect.signature(create_model_config).parameters)
      if unknown:
        raise UserError(f"--create_model: unknown create_model arguments {sorted(unknown)}")
      export_openai_unet(f.src, f.dst, **kw)
    else:
      from jaxdiff.convert import convert_timm_vit
      norm = {"inception": ((0.5,) * 3, (0.5,) * 3),
              "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}[f.normalize]
      convert_timm_vit(f.src, f.dst, image_size=f.image_size, mean=norm[0], std=norm[1])
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  print(f"wrote {f.dst}")


if __name__ == "__main__":
  app.run(main)
