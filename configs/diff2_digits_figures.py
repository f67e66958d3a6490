"""DIFF2 Figures 4–6 on digits: ASR / clean / robust ACC of φ vs φ* (DDPM purification) against t̄,
the mixing weight α and the trigger size. Every α or size other than the main run's (α = 0.2, full
16×16) is a full trigger + fine-tuning + evaluation run in WORKDIR/sweep_<name>/<name>=<value>/."""
from configs import diff2_digits


def get_config():
  c = diff2_digits.get_config()
  c.purify.update(samplers=("ddpm",), one_step=False)
  c.certify.n = 0
  c.diff2.update(sweep_t_bar=(25, 75, 150), sweep_alpha=(0.1, 0.2, 0.3), sweep_trigger_size=(8, 12, 16))
  return c
