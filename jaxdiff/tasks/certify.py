"""Task ``certify``: denoised-smoothing CERTIFY over a test subset, one resumable TSV per σ, then
certified accuracy at fixed radii (markdown) and against radius (PNG)."""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.report import progress, write_report
from jaxdiff.robust import certify, denoised_classifier
from jaxdiff.robust.analysis import TsvWriter, certified_accuracy, certified_table, plot_certified
from jaxdiff.tasks.purification import eval_subset, load_classifier_fn, load_denoiser


def certify_dataset(base, x, y, idx, tsv_path, *, key, sigma, num_classes, n0, n, alpha, batch_size,
                    images_per_call, transform=None, desc="certify"):
  """Certifies images not yet in ``tsv_path``; image i uses key fold_in(key, idx[i]) (resume-exact)."""
  w = TsvWriter(tsv_path)
  todo = [i for i in range(len(idx)) if int(idx[i]) not in w.done]
  bar = progress(total=len(idx), initial=len(idx) - len(todo), desc=desc, unit="img")
  for s in range(0, len(todo), images_per_call):
    sel = todo[s:s + images_per_call]
    xb = jnp.asarray(x[sel])
    if transform is not None:
      xb = transform(xb)
    t0 = time.time()
    # One certify call per image: its key is fold_in(key, idx), so a resumed run redraws the same noise.
    out = [certify(base, xb[j:j + 1], key=jax.random.fold_in(key, int(idx[i])), sigma=sigma,
                   num_classes=num_classes, n0=n0, n=n, alpha=alpha, batch_size=batch_size)
           for j, i in enumerate(sel)]
    preds, radii, counts = (np.concatenate(v) for v in zip(*out))
    dt = (time.time() - t0) / len(sel)
    for j, i in enumerate(sel):
      w.write(int(idx[i]), int(y[i]), int(preds[j]), float(radii[j]), int(preds[j] == y[i]), dt, int(counts[j]))
    bar.update(len(sel))
  bar.close()
  w.close()


def run_certify(config, workdir):
  classify, _ = load_classifier_fn(config.classifier.path)
  eps_fn, schedule = load_denoiser(config.purify)
  c = config.certify
  x, y, idx = eval_subset(config)
  key = jax.random.key(config.seed)
  paths = {}
  for sigma in c.sigmas:
    base = denoised_classifier(eps_fn, schedule, classify, sigma, num_steps=c.denoise_steps)
    path = os.path.join(workdir, f"certify_sigma{sigma:g}.tsv")
    certify_dataset(base, x, y, idx, path, key=key, sigma=sigma, num_classes=c.num_classes, n0=c.n0, n=c.n,
                    alpha=c.alpha, batch_size=c.batch_size, images_per_call=1, desc=f"certify σ={sigma:g}")
    paths[f"σ = {sigma:g}"] = path
  radii = list(c.radii)
  table = certified_table(paths, radii)
  plot_certified(paths, os.path.join(workdir, "certified_accuracy.png"))
  report = {"radii": radii, "n": c.n, "n0": c.n0, "alpha": c.alpha, "num_examples": int(len(idx)),
            "certified_accuracy": {k: certified_accuracy(p, radii) for k, p in paths.items()},
            "t_star": {f"{s:g}": denoised_classifier(eps_fn, schedule, classify, s).t_star for s in c.sigmas}}
  md = (f"# Certified accuracy (denoised smoothing, N = {c.n}, N0 = {c.n0}, α = {c.alpha}, "
        f"{len(idx)} images)\n\n" + table + "\nPlot: certified_accuracy.png\n")
  write_report(workdir, report, md)
  print(md, flush=True)
  return report
