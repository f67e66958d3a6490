import os

# Tests run on CPU; the multi-device tests ask for 4 host devices (must be set before jax starts).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import sys
import types

# PyPI's torchvision wheel (a test extra, for pytorch-fid's InceptionV3) is built against the CUDA torch; beside
# the CPU build its C++ ops do not register and its fake-kernel registrations fail at import, which also breaks
# diffusers (it imports torchvision). The networks the tests use are plain torch.nn: skip the registrations.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `configs.*` importable as in launch/main.py
os.environ.setdefault("JAXDIFF_PROGRESS", "0")


def tiny_ddpm_config(num_steps=6):
  """configs/ddpm_digits.py shrunk for tests (8×8 digits, 8-channel U-Net)."""
  from configs import ddpm_digits
  c = ddpm_digits.get_config()
  c.data.image_size = 8
  c.model.update(image_size=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
                 norm_num_groups=4)
  c.train.update(num_steps=num_steps, batch_size=16, log_every=2, checkpoint_every=2, sample_every=0,
                 num_samples=4, sample_steps=3)
  return c


def tiny_exports(tmp, size, channels):
  """Random-weight exports in tmp: [U-Net, CNN 0, CNN 1] paths (size×size×channels images)."""
  import jax
  import ml_collections
  from jaxdiff.models import build_model, init_variables
  from jaxdiff.convert import export_model
  ucfg = ml_collections.ConfigDict(dict(
      name="unet", image_size=size, in_channels=channels, base_channels=8, channel_mults=(1, 2),
      attention_resolutions=(size // 2,), layers_per_block=1, norm_num_groups=4, dropout=0.0, dtype="float32"))
  unet = build_model(ucfg)
  export_model(str(tmp / "unet"), "unet", ucfg, init_variables(unet, ucfg, jax.random.key(0)),
               {"diffusion": {"schedule": "linear", "num_timesteps": 1000}})
  paths = [str(tmp / "unet")]
  for i in range(2):
    ccfg = ml_collections.ConfigDict(dict(name="cnn", image_size=size, in_channels=channels, num_classes=10,
                                          widths=(4,), dtype="float32"))
    clf = build_model(ccfg)
    export_model(str(tmp / f"cnn{i}"), "classifier", ccfg, init_variables(clf, ccfg, jax.random.key(i)))
    paths.append(str(tmp / f"cnn{i}"))
  return paths
