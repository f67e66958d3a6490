"""Every defence over the digits zoo (Diff-Cleanse Tables 1–4 analogues): BBTI and Elijah detection on all 12
models, Diff-Cleanse / Diff-Pruning removal on the 8 backdoored ones. Needs the zoo first, same settings:

  python launch/main.py --config=configs/zoo_digits.py --workdir=workdirs/zoo_digits
  python launch/main.py --config=configs/defend_zoo_digits.py --config.defend.zoo_workdir=workdirs/zoo_digits \
      --workdir=workdirs/defend_zoo_digits
  # a subset: --config.defend.models='("clean_s0", "bd_box_corner")'

BBTI as configs/scan.py (batch 16, 20 steps) with each model's own sampler and the pixel encoder (the digits
CNN's features collapse on noise-like samples: a false positive on the clean DDPM); TrojDiff models through
TrojDiff's own sampling at their γ, In-/Out-D2D with κ 0.75 (defend.class_kappa); removal prunes ⌊3 %·C⌋ channels
per layer (1 of each 64-channel layer, none of the 32-channel ones) and fine-tunes 300 steps (keeping the EMA of
the iterates) on 512 samples the model generates itself (100-step DDPM: fine-tuning on 50-step DDIM samples
doubled every repaired model's FID).
The removal's FIDs use 1,024 clean samples (`defend.fid_samples`): at the zoo's 192 a digits FID reads ~0.7 high
and varies ±13 % between seeds, more than the 25 % a repair may cost. Each such FID takes ~3 min on 2 cores
(7 per backdoored model); --config.defend.fid_samples=192 for a quick look.
"""
from configs import default, zoo_digits


def get_config():
  c = zoo_digits.get_config()
  c.task = "defend_zoo"
  default.add_scan(c, model="", encoder_path="assets:digits/cnn")
  c.scan.update(batch=16, num_steps=20, encoder="pixels")
  default.add_defend(c)
  return c
