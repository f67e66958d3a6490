"""Task ``certify``: denoised-smoothing CERTIFY over a test subset, one resumable TSV per σ, then
certified accuracy at fixed radii (markdown) and against radius (PNG)."""
from __future__ import annotations

import os

import jax

from jaxdiff.metrics import certified_accuracy
from jaxdiff.report import markdown_table, plot_certified, write_report
from jaxdiff.robust import DenoisedClassifier, certify_dataset, denoising_timestep, read_tsv
from jaxdiff.tasks.common import (CERTIFY_FIELDS, eval_subset, fingerprint, load_classifier, load_denoiser,
                                  schedule_from_config)
from jaxdiff.tasks.config import validate


def run_certify(config, workdir):
  validate(config)
  clf, cvars = load_classifier(config.classifier.path, dtype=config.classifier.dtype)
  denoiser, dparams, _ = load_denoiser(config)
  c, d = config.certify, config.purify.diffusion
  base = DenoisedClassifier(denoiser, clf, num_steps=c.denoise_steps, schedule=d.schedule,
                            num_timesteps=d.num_timesteps)
  params = {"denoiser": dparams, "classifier": cvars}
  x, y, idx = eval_subset(config)
  key = jax.random.key(config.seed)
  results = {}
  models = {"denoiser": config.purify.denoiser, "classifier": config.classifier.path}
  for sigma in c.sigmas:  # one compilation for every σ: σ is an argument of the counting loop
    path = os.path.join(workdir, f"certify_sigma{sigma:g}.tsv")
    fp = {**fingerprint(config, *CERTIFY_FIELDS, models=models), "sigma": sigma}
    certify_dataset(base, x, y, idx, path, key=key, sigma=sigma, num_classes=c.num_classes, n0=c.n0, n=c.n,
                    alpha=c.alpha, batch_size=c.batch_size, params=params, fingerprint=fp,
                    overwrite=config.overwrite, desc=f"certify σ={sigma:g}")
    results[f"σ = {sigma:g}"] = read_tsv(path)
  radii = list(c.radii)
  table = markdown_table(["run"] + [f"r = {r:g}" for r in radii],
                         [[name] + certified_accuracy(rows, radii) for name, rows in results.items()])
  plot_certified(results, os.path.join(workdir, "certified_accuracy.png"))
  schedule = schedule_from_config(d)
  report = {"radii": radii, "n": c.n, "n0": c.n0, "alpha": c.alpha, "num_examples": int(len(idx)),
            "certified_accuracy": {k: certified_accuracy(rows, radii) for k, rows in results.items()},
            "t_star": {f"{s:g}": denoising_timestep(schedule, s) for s in c.sigmas}}
  md = (f"# Certified accuracy (denoised smoothing, N = {c.n}, N0 = {c.n0}, α = {c.alpha}, "
        f"{len(idx)} images)\n\n" + table + "\nPlot: certified_accuracy.png\n")
  write_report(workdir, report, md)
  print(md, flush=True)
  return report
