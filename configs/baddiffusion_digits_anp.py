"""BadDiffusion App. B on digits (and DIFF2 App. C.1's ANP on a generative backdoor): Adversarial Neuron Pruning
of the backdoored DDPM of configs/baddiffusion_digits.py — masks fitted on 100 clean batches of 32 with
ε_ANP = 0.4, channels with a mask < 0.2 pruned — for each ANP learning rate, then the target's reconstruction
from triggered noise (MSE, SSIM, ASR: a removed backdoor raises the MSE) and the FID of clean samples. Reuses the
backdoored model when run in the same workdir (the ANP keys do not change it):

  python launch/main.py --config=configs/baddiffusion_digits.py --workdir=workdirs/baddiffusion_digits
  python launch/main.py --config=configs/baddiffusion_digits_anp.py --workdir=workdirs/baddiffusion_digits

Writes report.json "anp" (rows {model, setting "anp_lr=…", pruned_fraction, mse, ssim, asr, fid}), anp.png and
anp/lr<rate>.png. Rates: BadDiffusion's range (1e-5 … 2e-4) and up to ANP's classifier rate (0.2) and beyond.
"""
from configs import baddiffusion_digits


def get_config():
  c = baddiffusion_digits.get_config()
  c.baddiffusion.update(clip=(False,), inpainting=(), anp_lrs=(1e-4, 0.01, 0.1, 0.2, 0.5, 1.0))
  return c
