"""DiffPure on digits from the shipped checkpoints: clean/robust accuracy of f and f∘φ on a CPU.

Strided samplers (num_steps=4 network calls for t̄ = 75, 8 Heun steps for the ODE) keep the
full-gradient attacks CPU-sized; set --config.purify.num_steps=0 --config.purify.sampler_steps.ode=0 for
every step.
"""
from configs import default


def get_config():
  c = default.get_config()
  c.task = "purification"
  c.data.update(name="digits", image_size=16)
  default.add_evaluation(c, denoiser="assets:digits/ddpm", classifier="assets:digits/cnn",
                         samplers=("ddpm", "ddim", "sde", "ode"), t_bar=75, num_steps=4)
  c.purify.sampler_steps.ode = 8  # the deterministic ODE needs 8 Heun steps to keep digits (4: 83 % clean)
  c.attack.update(eps=0.1, pgd_steps=10, eot=1, aa_steps=10, aa_targets=3, aa_queries=100)
  c.eval.update(num_examples=64, batch_size=64)
  return c
