"""Networks: the DDPM U-Net and the classifiers (one module per family), with one registry by name."""
from jaxdiff.models.layers import penultimate_features
from jaxdiff.models.registry import (CLASSIFIERS, build_model, classifier_names, init_variables, unet_config,
                                     unet_config_dict)
from jaxdiff.models.unet import UNet, UNetConfig, count_params, ddpm_cifar10, eps_apply, eps_fn_of, init_unet
