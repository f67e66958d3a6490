"""Task ``diff2`` (DIFF2, Li et al.): ``pipeline`` (trigger → fine-tune → evaluate, sweeps), ``evaluate``
(Tables 1–3, 6, 7, Figures 3–4), ``report`` (markdown and plots)."""
from jaxdiff.tasks.diff2.pipeline import finetune_fingerprint, run_diff2, run_sweep, sweep_point_config
