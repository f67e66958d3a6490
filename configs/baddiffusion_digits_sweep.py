"""BadDiffusion's table-style grid on digits: poison rates 0.05 / 0.1 / 0.2 / 0.5 × triggers (stop sign, grey
box) × targets (hat, corner), one resumable sub-run per point in WORKDIR/sweep/ (backdoored model only; the
clean model's rows are the main run's), with Figure 2 (MSE and FID against the poison rate) and Figure 5
(clipping). About 16 fine-tunes of baddiffusion_digits' length: hours on 2 CPU cores, minutes on a GPU."""
from configs import baddiffusion_digits


def get_config():
  c = baddiffusion_digits.get_config()
  c.baddiffusion.update(sweep_poison_rate=(0.05, 0.1, 0.2, 0.5), sweep_triggers=("stop_sign", "grey_box"),
                        sweep_targets=("hat", "corner"))
  return c
