"""DiffPure on digits from the shipped checkpoints: clean and PGD accuracy of f and f∘φ on a CPU.

By default 1.7 min on 2 cores: 32 test images, DDPM/DDIM/SDE purification (4 network calls from t̄ = 75),
full-gradient PGD-10. The full evaluation — 64 images, the probability-flow ODE too (8 Heun steps) and
AutoAttack-rand — takes 18 min on 2 cores:
  python launch/main.py --config=configs/purify_digits.py --workdir=W --config.eval.num_examples=64 \\
    --config.attack.autoattack=True "--config.purify.samplers=('ddpm','ddim','sde','ode')"
Every step instead of 4: --config.purify.num_steps=0 --config.purify.sampler_steps.ode=0.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "purification"
  c.data.update(name="digits", image_size=16)
  default.add_evaluation(c, denoiser="assets:digits/ddpm", classifier="assets:digits/cnn",
                         samplers=("ddpm", "ddim", "sde"), t_bar=75, num_steps=4)
  c.purify.sampler_steps.ode = 8  # the deterministic ODE needs 8 Heun steps to keep digits (4: 83 % clean)
  c.attack.update(eps=0.1, pgd_steps=10, eot=1, autoattack=False, aa_steps=10, aa_targets=3, aa_queries=100)
  c.eval.update(num_examples=32, batch_size=64)
  return c
