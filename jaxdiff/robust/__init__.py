"""Robustness evaluation: purification (DiffPure), certification (denoised smoothing), result records."""
from jaxdiff.robust.certify import (ABSTAIN, DenoisedClassifier, certify, clopper_pearson_lower, denoised_classifier,
                                    denoising_timestep, predict, sample_counts)
from jaxdiff.robust.purification import PurifiedClassifier, Purifier, purified_logits_fn, purify_pixels
from jaxdiff.robust.records import TSV_HEADER, TsvWriter, certify_dataset, read_tsv
