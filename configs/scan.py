"""Scan one diffusion model for a backdoor (Diff-Cleanse's BBTI trigger inversion + MSCR verdict, Elijah's
scores beside). Defaults fit a digits model on 2 CPU cores: batch 16, 20-step DDPM, the pixel encoder.

  python launch/main.py --config=configs/scan.py --config.scan.model=DIR --workdir=W

With --config.scan.remove=True the repaired model goes to W/repaired (Diff-Cleanse: prune 3 % of each layer's
channels by the inverted trigger's Taylor scores, fine-tune on the model's own samples).
On the digits BadDiffusion models that repair (loss_p) leaves 11–92 % real-trigger ASR;
--config.scan.remove_loss=unlearn (not in the paper: the inverted trigger's shift denoised away) took both measured
models to ≤ 2 %, their triggered samples digits again (docs/scan_digits_unlearn.json; bd_box_corner needs
--config.scan.finetune_steps=3000 for FID +11 %).

A model used as a purifier (DIFF2's threat): --config.scan.mode=entropy judges it by the label entropy of test
images diffused to t = T and reversed (DIFF2 §5.7), with the classifier --config.scan.classifier (the shipped digits
CNN by default) and the threshold calibrated on configs/diff2_detect_digits.py (2.03 nats, 5 × 100 images, 20 DDPM
steps; recalibrate for other data: --config.scan.entropy_threshold). On held-out digits models (other seeds,
fine-tune lengths, α) that threshold flagged 3 of 5 DIFF2 models and 0 of 5 benign ones: scan.md says so.

TERD instead of BBTI: --config.scan.mode=terd (the trigger reversed without the target, the verdict by the KL of
N(r̂, I) from N(0, I); scan.terd_* settings; trigger.npy is r̂ for an input filter).

DIR: a jaxdiff export (e.g. WORKDIR/backdoored of baddiffusion_digits, WORKDIR/models/<name> of the zoo) or a
diffusers UNet2DModel folder. Other data: --config.scan.encoder_path=a classifier export of that data.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "scan"
  c.data.update(name="digits", image_size=16)  # the FID reference of --config.scan.remove=True
  default.add_scan(c, model="assets:digits/ddpm", encoder_path="assets:digits/cnn")
  # pixels + DDPM: right on the shipped clean DDPM (MSCR 0.12) and on an unseen BadDiffusion model (0.69); the
  # digits CNN's features collapse on noise-like samples (false positive), and DDIM finds a natural bright-blob
  # "trigger" in the clean model. A model meant for DDIM (VillanDiffusion): --config.scan.samplers='("ddim",)'; a
  # TrojDiff model: --config.scan.trojan_gammas='(0.6,)' adds TrojDiff's backdoor sampling (x_T = γε + r).
  c.scan.update(batch=16, num_steps=20, encoder="pixels", samplers=("ddpm",))
  return c
