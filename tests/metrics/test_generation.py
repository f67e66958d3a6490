"""Generation metrics against independent implementations: SSIM vs scikit-image, the Fréchet distance vs
scipy's sqrtm formula (pytorch-fid's), MSE-threshold ASR by hand."""
import numpy as np
import pytest
import scipy.linalg

from jaxdiff.metrics import fid, frechet_distance, mse_attack_success_rate, mse_per_sample, ssim_per_sample


def test_ssim_matches_scikit_image():
  skimage_metrics = pytest.importorskip("skimage.metrics")  # test extra
  rng = np.random.default_rng(0)
  target = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
  imgs = np.clip(target + rng.normal(0, [[[[0.02]]], [[[0.1]]], [[[0.3]]]], (3, 16, 16, 3)), 0, 1).astype(np.float32)
  ours = ssim_per_sample(imgs, target)
  ref = [skimage_metrics.structural_similarity(i, target, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=False) for i in imgs]
  np.testing.assert_allclose(ours, ref, atol=1e-4)
  assert ours[0] > ours[1] > ours[2]


def _scipy_frechet(mu1, s1, mu2, s2):
  covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_distance_matches_the_sqrtm_formula():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(500, 16))
  b = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
  mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
  np.testing.assert_allclose(frechet_distance(mu1, s1, mu2, s2), _scipy_frechet(mu1, s1, mu2, s2), rtol=1e-8)
  assert abs(fid(a, a)) < 1e-8 and fid(a, b) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
  # rank-deficient covariances (fewer samples than dimensions) stay finite and non-negative
  assert 0 <= fid(a[:8], b[:8]) < np.inf


def test_frechet_distance_matches_pytorch_fid():
  fid_score = pytest.importorskip("pytorch_fid.fid_score")  # test extra
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(300, 12)), rng.normal(size=(300, 12)) * 1.3 + 0.2
  stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (a, b)]
  np.testing.assert_allclose(fid(a, b), fid_score.calculate_frechet_distance(*stats[0], *stats[1]), rtol=1e-8)


def test_mse_and_asr():
  target = np.zeros((2, 2, 1), np.float32)
  imgs = np.stack([target + 0.01, target + 0.1, target + 0.5])
  mse = mse_per_sample(imgs, target)
  np.testing.assert_allclose(mse, [1e-4, 1e-2, 0.25], rtol=1e-5)
  assert mse_attack_success_rate(mse, 1e-3) == pytest.approx(1 / 3)
