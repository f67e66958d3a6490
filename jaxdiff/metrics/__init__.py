"""Metrics as plain functions of predictions, labels and images (host numpy): accuracy, attack success rate,
worst case over attacks, certified accuracy; MSE, SSIM, MSE-threshold ASR and FID of generated images."""
from jaxdiff.metrics.certified import certified_accuracy
from jaxdiff.metrics.classification import accuracy, attack_success_rate, predictions, worst_case_accuracy
from jaxdiff.metrics.generation import (feature_statistics, fid, frechet_distance, mse_attack_success_rate,
                                        mse_per_sample, ssim_per_sample)
