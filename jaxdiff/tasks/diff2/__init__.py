"""Task ``diff2`` (DIFF2, Li et al.): ``pipeline`` (trigger → fine-tune → evaluate, sweeps), ``evaluate``
(Tables 1–3, 6, 7, Figures 3–4), ``defenses`` (defences of one φ / φ* pair, Table 8), ``detection`` (entropy
detection and Elijah over a population of models, §5.6–5.7), ``adaptive`` (Table 9), ``report`` (markdown and plots)."""
from jaxdiff.tasks.diff2.adaptive import run_advtrain
from jaxdiff.tasks.diff2.detection import run_detection
from jaxdiff.tasks.diff2.pipeline import finetune_fingerprint, run_diff2, run_sweep, sweep_point_config

# defences measured over many models (sub-runs) rather than one φ / φ*
POPULATION_DEFENSES = {"entropy": run_detection, "elijah": run_detection, "advtrain": run_advtrain}


def run(config, workdir):
  """The ``diff2`` task: one φ / φ* pair (``run_diff2``), or a population defence (``config.defense.name``)."""
  name = config.defense.name if config.get("defense") else ""
  return (POPULATION_DEFENSES[name] if name in POPULATION_DEFENSES else run_diff2)(config, workdir)
