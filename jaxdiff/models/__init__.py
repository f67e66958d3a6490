"""Networks: the DDPM U-Net and the classifiers, with a registry by name."""
from jaxdiff.models.registry import build_model, classifier_names, init_variables
from jaxdiff.models.unet import UNet, UNetConfig, count_params, ddpm_cifar10, init_unet
