"""The digits zoo: 12 DDPMs fine-tuned from the shipped digits DDPM (16×16 grey) on which backdoor defences
are measured: 4 clean (seeds 0–3; 0, 300, 600, 900 steps), 3 BadDiffusion (SDE: ancestral DDPM), 2
VillanDiffusion (ODE: DDIM / DPM-Solver++, ψ = 1), 3 TrojDiff (D2I, In-D2D digit 0, Out-D2D rings).
Backdoored entries: 1,500 steps (VillanDiffusion 10,000 / 14,000 and Out-D2D 4,500: at 1,500 they reached only
45–70 % ASR), batch 32, poison rate 0.5 (more poisoned rows per step instead of more steps: the CPU budget). Triggers at the paper's 32×32 size 18 (9×9 at 16×16).

  python launch/main.py --config=configs/zoo_digits.py --workdir=workdirs/zoo_digits
  # one model longer: --config.zoo.models.villan_stop_cat.steps=3000 (resumes from its checkpoint)
"""
from configs import default
from configs.default import zoo_entry

BACKDOOR = dict(steps=1500, poison_rate=0.5, trigger_size=18)
LONGEST = dict(BACKDOOR, steps=10000)


def get_config():
  c = default.get_config()
  c.task = "zoo"
  c.data.update(name="digits", image_size=16)
  c.model.update(image_size=16, in_channels=1, init_from="assets:digits/ddpm")
  default.add_zoo(c, {
      "clean_s0": zoo_entry("clean", seed=0, steps=0),
      "clean_s1": zoo_entry("clean", seed=1, steps=300),
      "clean_s2": zoo_entry("clean", seed=2, steps=600),
      "clean_s3": zoo_entry("clean", seed=3, steps=900),
      "bd_stop_hat": zoo_entry("baddiffusion", seed=10, trigger="stop_sign", target="hat", **BACKDOOR),
      "bd_box_corner": zoo_entry("baddiffusion", seed=11, trigger="grey_box", target="corner", **BACKDOOR),
      "bd_stop_shoe": zoo_entry("baddiffusion", seed=12, trigger="stop_sign", target="shoe", **BACKDOOR),
      "villan_stop_cat": zoo_entry("villandiffusion", seed=20, trigger="stop_sign", target="cat", **LONGEST),
      "villan_box_hat": zoo_entry("villandiffusion", seed=21, trigger="grey_box", target="hat",
                                  **dict(LONGEST, steps=14000)),
      "trojdiff_d2i": zoo_entry("trojdiff_d2i", seed=30, trojan_trigger="blend", target="shoe", **BACKDOOR),
      "trojdiff_in_d2d": zoo_entry("trojdiff_in_d2d", seed=31, trojan_trigger="blend", target_class=0, **BACKDOOR),
      "trojdiff_out_d2d": zoo_entry("trojdiff_out_d2d", seed=32, trojan_trigger="patch", steps=4500, poison_rate=0.5,
                                    trigger_size=18),
  })
  c.zoo.update(fid_classifier="assets:digits/cnn", class_classifier="assets:digits/cnn")
  c.optim.update(name="adam", lr=1e-3, warmup_steps=50, decay="cosine", grad_clip=1.0)
  c.train.update(batch_size=32, log_every=100, checkpoint_every=500, num_steps=1)
  return c
