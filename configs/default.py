"""Shared defaults for every experiment; experiment files start from ``get_config()`` and edit it.

The defaults and the rules every value must satisfy live together in ``jaxdiff.tasks.config`` (one block
and its rule table at a time), so the package can validate a config before a task loads anything.
"""
import ml_collections  # noqa: F401  (experiment files use default.ml_collections)

from jaxdiff.tasks.config import (ADM_CIFAR10, ADM_IMAGENET256, CIFAR_SURROGATE, CIFAR_TARGET,  # noqa: F401
                                  DDPM_CIFAR10, ENTROPY_THRESHOLD_DIGITS, INCEPTION_FID, add_baddiffusion,
                                  add_certification, add_diff2, add_defend, add_defense, add_evaluation, add_scan,
                                  add_zoo, cifar_data, get_config, zoo_entry)
