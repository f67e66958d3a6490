"""Robustness evaluation: purification (DiffPure) and certification (denoised smoothing)."""
from jaxdiff.robust.purification import purified_logits_fn, purify_pixels
