"""Task ``purification``: clean and robust accuracy of f and f∘φ (DiffPure) under PGD and AutoAttack."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import attacks
from jaxdiff.data import make_source
from jaxdiff.report import markdown_table, progress, save_grid, write_report
from jaxdiff.robust import purified_logits_fn, purify_pixels
from jaxdiff.tasks.common import eps_fn_of, load_model, sampler_steps, schedule_from_config


def load_classifier_fn(path):
  """(classify(x) -> logits, meta) for an exported classifier; x pixel space [0, 1]."""
  model, variables, meta = load_model(path)
  return (lambda x: model.apply(variables, x, train=False)), meta


def load_denoiser(cfg):
  model, variables, meta = load_model(cfg.denoiser, dtype=cfg.get("dtype") or None)
  return eps_fn_of(model, variables["params"]), schedule_from_config(cfg.diffusion)


def eval_subset(config):
  """(x, y, idx): every ``eval.stride``-th test image, the first ``eval.num_examples`` of them (pixel space)."""
  src = make_source(config.data, "test")
  idx = np.arange(0, len(src), config.eval.get("stride", 1))[:config.eval.num_examples]
  x, y = src.get(idx)
  return x, y, idx


def purification_logits(classify, eps_fn, schedule, p, sampler):
  return purified_logits_fn(classify, eps_fn, schedule, t_bar=p.t_bar, sampler=sampler,
                            num_steps=sampler_steps(p, sampler), gradient=p.gradient, remat=p.remat)


def predictions(logits_fn, x, batch, key=None):
  """argmax labels [N] of ``logits_fn(x)`` (or ``logits_fn(x, fold_in(key, i))`` for a stochastic one,
  i the batch's first row) over ``x`` in batches."""
  out = []
  for i in range(0, len(x), batch):
    xb = jnp.asarray(x[i:i + batch])
    out.append(np.asarray(jnp.argmax(logits_fn(xb) if key is None else logits_fn(xb, jax.random.fold_in(key, i)), -1)))
  return np.concatenate(out)


def accuracy(logits_fn, x, y, batch, key=None):
  return float(np.mean(predictions(logits_fn, x, batch, key) == np.asarray(y)))


def autoattack_fn(logits_fn, a, stochastic=True):
  """``fn(x, y, key) -> x_adv``: AutoAttack on ``logits_fn`` with the settings of ``config.attack`` (``a``)."""
  return lambda xb, yb, k: attacks.autoattack(
      logits_fn, xb, yb, key=k, eps=a.eps, norm=a.norm, version=a.autoattack_version, steps=a.aa_steps,
      n_target_classes=a.aa_targets, square_queries=a.aa_queries, eot_iter=a.eot, stochastic=stochastic)


def attack_batches(fn, x, y, batch, key, desc):
  out = []
  bar = progress(total=len(x), desc=desc, unit="img")
  for i in range(0, len(x), batch):
    out.append(np.asarray(fn(jnp.asarray(x[i:i + batch]), jnp.asarray(y[i:i + batch]), jax.random.fold_in(key, i))))
    bar.update(len(out[-1]))
  bar.close()
  return np.concatenate(out)


def run_purification(config, workdir):
  classify, _ = load_classifier_fn(config.classifier.path)
  classify = jax.jit(classify)
  eps_fn, schedule = load_denoiser(config.purify)
  x, y, _ = eval_subset(config)
  a, p, bs = config.attack, config.purify, config.eval.batch_size
  key = jax.random.key(config.seed)
  report = {"num_examples": int(len(x)), "t_bar": p.t_bar, "eps": a.eps, "norm": a.norm,
            "classifier": {"clean_acc": accuracy(classify, x, y, bs)}, "purification": {}}
  pgd_f = jax.jit(lambda xb, yb, k: attacks.pgd(classify, xb, yb, key=k, eps=a.eps, steps=a.pgd_steps,
                                                norm=a.norm))
  report["classifier"]["pgd_acc"] = accuracy(classify, attack_batches(pgd_f, x, y, bs, key, "pgd f"), y, bs)
  rows = [["f (no purifier)", "-", report["classifier"]["clean_acc"], report["classifier"]["pgd_acc"], "-"]]
  for sampler in p.samplers:
    lf = purification_logits(classify, eps_fn, schedule, p, sampler)
    lf_j = jax.jit(lf)
    res = {"clean_acc": accuracy(lf_j, x, y, bs, jax.random.fold_in(key, 1))}
    pgd = jax.jit(lambda xb, yb, k: attacks.pgd(lf, xb, yb, key=k, eps=a.eps, steps=a.pgd_steps, norm=a.norm,
                                                eot=a.eot, stochastic=True))
    x_pgd = attack_batches(pgd, x, y, bs, jax.random.fold_in(key, 2), f"pgd f∘φ[{sampler}]")
    res["pgd_acc"] = accuracy(lf_j, x_pgd, y, bs, jax.random.fold_in(key, 3))
    if a.autoattack:
      x_aa = attack_batches(autoattack_fn(lf, a), x, y, bs, jax.random.fold_in(key, 4), f"autoattack f∘φ[{sampler}]")
      res["autoattack_acc"] = accuracy(lf_j, x_aa, y, bs, jax.random.fold_in(key, 5))
    report["purification"][sampler] = res
    rows.append([f"f∘φ ({sampler})", sampler_steps(p, sampler) or p.t_bar, res["clean_acc"], res["pgd_acc"],
                 res.get("autoattack_acc", "-")])
    if sampler == p.samplers[0]:
      n = min(8, len(x))
      pur = np.asarray(jax.jit(lambda z, k: purify_pixels(eps_fn, schedule, z, k, t_bar=p.t_bar, sampler=sampler,
                                                          num_steps=sampler_steps(p, sampler)))(
          jnp.asarray(x_pgd[:n]), jax.random.fold_in(key, 6)))
      save_grid(None, os.path.join(workdir, "purification_grid.png"), rows=[x[:n], x_pgd[:n], pur],
                scale=config.eval.get("grid_scale", 4))
  md = (f"# Purification (t̄ = {p.t_bar}, {a.norm} ε = {a.eps:.4g}, {len(x)} test images)\n\n"
        "Rows of purification_grid.png: clean, PGD-adversarial, purified adversarial.\n\n"
        + markdown_table(["model", "sampler steps", "clean acc", "PGD acc", "AutoAttack acc"], rows))
  write_report(workdir, report, md)
  print(md, flush=True)
  return report
