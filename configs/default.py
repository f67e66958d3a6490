"""Shared defaults for every experiment; experiment files start from ``get_config()`` and edit it.

The defaults and the rules every value must satisfy live together in ``jaxdiff.tasks.config`` (one block
and its rule table at a time), so the package can validate a config before a task loads anything.
"""
import ml_collections  # noqa: F401  (experiment files use default.ml_collections)

from jaxdiff.tasks.config import (add_baddiffusion, add_certification, add_diff2, add_evaluation,  # noqa: F401
                                  add_defend, add_defense, add_scan, add_zoo, get_config, zoo_entry)
