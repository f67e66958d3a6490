"""Denoised smoothing on digits from the shipped checkpoints (CPU: N = 1,000 on 40 images per σ)."""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "certify"
  c.data.update(name="digits", image_size=16)
  default.add_evaluation(c, denoiser="assets:digits/ddpm", classifier="assets:digits/cnn")
  default.add_certification(c, sigmas=(0.25, 0.5), n=1000, n0=100)
  c.certify.batch_size = 500
  c.eval.update(num_examples=40, stride=9)
  return c
