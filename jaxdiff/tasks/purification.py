"""Task ``purification``: clean and robust accuracy of f and f∘φ (DiffPure) under PGD and AutoAttack."""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

from jaxdiff.batching import map_batches
from jaxdiff.functional import Apply, jit_apply
from jaxdiff.metrics import accuracy
from jaxdiff.report import markdown_table, save_grid, write_report
from jaxdiff.robust import PurifiedClassifier
from jaxdiff.tasks.common import (attack_fn, eval_subset, fingerprint, load_classifier, load_denoiser,
                                  purifier_from_config, sampler_steps)
from jaxdiff.tasks.config import validate


def run_purification(config, workdir):
  validate(config)
  clf, cvars = load_classifier(config.classifier.path, dtype=config.classifier.dtype)
  denoiser, dparams, _ = load_denoiser(config)
  x, y, _ = eval_subset(config)
  a, p, bs = config.attack, config.purify, config.eval.batch_size
  key = jax.random.key(config.seed)
  classify = functools.partial(jit_apply, Apply(clf), cvars)
  report = {"fingerprint": fingerprint(config, "seed", "data", "purify", "attack", "eval",
                                      models={"denoiser": p.denoiser, "classifier": config.classifier.path}),
            "num_examples": int(len(x)), "t_bar": p.t_bar, "eps": a.eps, "norm": a.norm,
            "classifier": {"clean_acc": accuracy(classify, x, y, bs)}, "purification": {}}
  x_pgd = map_batches(attack_fn(Apply(clf), cvars, a, "pgd", False), (x, y), bs, key=key, desc="pgd f")
  report["classifier"]["pgd_acc"] = accuracy(classify, x_pgd, y, bs)
  rows = [["f (no purifier)", "-", report["classifier"]["clean_acc"], report["classifier"]["pgd_acc"], "-"]]
  params = {"denoiser": dparams, "classifier": cvars}
  for sampler in p.samplers:
    purifier = purifier_from_config(config, denoiser, sampler)
    lf = PurifiedClassifier(purifier, clf)
    logits = functools.partial(jit_apply, lf, params)
    res = {"clean_acc": accuracy(logits, x, y, bs, jax.random.fold_in(key, 1))}
    x_pgd = map_batches(attack_fn(lf, params, a, "pgd", True), (x, y), bs, key=jax.random.fold_in(key, 2),
                        desc=f"pgd f∘φ[{sampler}]")
    res["pgd_acc"] = accuracy(logits, x_pgd, y, bs, jax.random.fold_in(key, 3))
    if a.autoattack:
      x_aa = map_batches(attack_fn(lf, params, a, "autoattack", True), (x, y), bs, key=jax.random.fold_in(key, 4),
                         desc=f"autoattack f∘φ[{sampler}]")
      res["autoattack_acc"] = accuracy(logits, x_aa, y, bs, jax.random.fold_in(key, 5))
    report["purification"][sampler] = res
    rows.append([f"f∘φ ({sampler})", sampler_steps(p, sampler) or p.t_bar, res["clean_acc"], res["pgd_acc"],
                 res.get("autoattack_acc", "-")])
    if sampler == p.samplers[0]:
      n = min(8, len(x))
      pur = np.asarray(jit_apply(purifier, dparams, x_pgd[:n], jax.random.fold_in(key, 6)))
      save_grid(None, os.path.join(workdir, "purification_grid.png"), rows=[x[:n], x_pgd[:n], pur],
                scale=config.eval.grid_scale)
  md = (f"# Purification (t̄ = {p.t_bar}, {a.norm} ε = {a.eps:.4g}, {len(x)} test images)\n\n"
        "Rows of purification_grid.png: clean, PGD-adversarial, purified adversarial.\n\n"
        + markdown_table(["model", "sampler steps", "clean acc", "PGD acc", "AutoAttack acc"], rows))
  write_report(workdir, report, md)
  print(md, flush=True)
  return report
