"""Robustness evaluation: purification (DiffPure) and certification (denoised smoothing)."""
from jaxdiff.robust.purification import purified_logits_fn, purify_pixels
from jaxdiff.robust.certify import (ABSTAIN, certify, clopper_pearson_lower, denoised_classifier,
                                    denoising_timestep, predict, sample_counts)
