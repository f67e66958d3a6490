"""Model files in and out, safely: jaxdiff exports (safetensors + meta.json), diffusers checkpoints, pytorch-fid's
Inception-v3, OpenAI improved/guided-diffusion U-Nets, timm ViTs. Pickle files are never unpickled (torch's weights-only
loader at most)."""
from jaxdiff.convert.clip import clip_from_state_dict, load_clip_vision
from jaxdiff.convert.diffusers import config_from_diffusers, convert_state_dict, diffusers_config, load_diffusers_unet
from jaxdiff.convert.fetch import (Reference, cache_dir, fetch, is_reference, parse_reference, split_overrides,
                                   url_cache_path)
from jaxdiff.convert.export import (ASSETS, check_finite, export_model, flatten_params, load_model, load_params,
                                    model_digest, resolve_path, save_params, unflatten_params)
from jaxdiff.convert.inception import convert_inception, load_inception_features, load_inception_variables
from jaxdiff.convert.openai import convert_openai_unet, export_openai_unet, export_public_checkpoint, load_openai_unet
from jaxdiff.convert.timm import convert_timm_vit, load_timm_vit, params_from_timm_state, timm_vit_config
