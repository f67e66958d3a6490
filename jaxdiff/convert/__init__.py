"""Checkpoint import (diffusers safetensors)."""
from jaxdiff.convert.diffusers import config_from_diffusers, convert_state_dict, load_diffusers_unet
