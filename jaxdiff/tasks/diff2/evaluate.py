"""DIFF2 evaluation of benign φ vs backdoored φ*: Tables 1, 2, 3, 6, 7, Figure 3 and the Figure-4 sweep.

Every compiled function takes the weights as arguments (``PurifiedClassifier``/``DenoisedClassifier`` with
``params``), so φ and φ* — one architecture — share one compilation per sampler.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.batching import map_batches
from jaxdiff.functional import Apply, jit_apply
from jaxdiff.metrics import accuracy, attack_success_rate, certified_accuracy, predictions, worst_case_accuracy
from jaxdiff.report import save_grid
from jaxdiff.robust import DenoisedClassifier, PurifiedClassifier, certify_dataset, read_tsv
from jaxdiff.tasks.common import CERTIFY_FIELDS, attack_fn, fingerprint, load_classifier, purifier_from_config

MODELS = ("benign", "backdoored")


def asr(config, pred, y):
  return attack_success_rate(pred, y, targeted=config.diff2.targeted, target_class=config.diff2.target_class)


def robust_accuracy(config, logits, params, x, y, key, desc):
  """Table 2: robust ACC of the stochastic f∘φ (``logits(params, x, key)``, pixel space) on the first
  ``eval.robust_examples`` inputs under PGD and, with ``attack.autoattack``, AutoAttack. ``robust_acc`` is the
  per-input worst case over the attacks run; each attack's own figure is ``robust_acc_{pgd,autoattack}``.
  Empty when no attack is configured."""
  a, batch = config.attack, config.eval.batch_size
  n = min(len(x), config.eval.robust_examples)
  x, y = x[:n], y[:n]
  run = (["pgd"] if a.pgd_steps else []) + (["autoattack"] if a.autoattack else [])
  out, correct = {}, []
  for i, name in enumerate(run):
    adv = map_batches(attack_fn(logits, params, a, name, True), (x, y), batch, key=jax.random.fold_in(key, 2 * i),
                      desc=f"{name} {desc}")
    correct.append(predictions(functools.partial(jit_apply, logits, params), adv, batch,
                               jax.random.fold_in(key, 2 * i + 1)) == y)
    out[f"robust_acc_{name}"] = float(correct[-1].mean())
  if run:
    out["robust_acc"] = worst_case_accuracy(correct)
  return out


def measure(config, logits, params, x, y, xr, key, desc):
  """Clean ACC, trigger ASR and robust ACC (``robust_accuracy``) of ``logits(params, x, key)`` (pixel space)."""
  f = functools.partial(jit_apply, logits, params)
  res = {"clean_acc": accuracy(f, x, y, config.eval.batch_size, key),
         "asr": asr(config, predictions(f, xr, config.eval.batch_size, jax.random.fold_in(key, 1)), y)}
  res.update(robust_accuracy(config, logits, params, x, y, jax.random.fold_in(key, 2), desc))
  return res


def evaluate(config, workdir, trigger, frozen, classifier, denoiser, params, x, y):
  """Tables 1, 2, 7, the Figure-3 grid and the Figure-4 sweep. ``params[name]`` holds the weights of φ
  ("benign") and φ* ("backdoored") and the classifier, as ``PurifiedClassifier`` takes them. Returns
  (report, x_r)."""
  p, e = config.purify, config.eval
  batch = e.batch_size
  key = jax.random.key(config.seed + 11)
  xr = np.asarray(jax.jit(trigger.apply)(jnp.asarray(x), frozen))
  classify = functools.partial(jit_apply, Apply(classifier), params["benign"]["classifier"])
  report = {"attack": "targeted" if config.diff2.targeted else "untargeted", "purification": {},
            "no_purifier": {"clean_acc": accuracy(classify, x, y, batch),
                            "asr": asr(config, predictions(classify, xr, batch), y)}}
  n_grid = min(8, len(x))
  grid_rows = [x[:n_grid], xr[:n_grid]]
  first = p.samplers[0]
  for sampler in p.samplers:
    report["purification"][sampler] = {}
    purifier = purifier_from_config(config, denoiser, sampler)
    logits = PurifiedClassifier(purifier, classifier)
    for name in MODELS:
      prm = params[name]
      res = measure(config, logits, prm, x, y, xr, key, f"f∘φ[{sampler}] {name}")
      if p.one_step and sampler == first:  # Table 7: one-shot x̂0 from t̄ (any sampler)
        one = functools.partial(jit_apply, PurifiedClassifier(purifier.replace(num_steps=1), classifier), prm)
        report.setdefault("one_step", {})[name] = {"clean_acc": accuracy(one, x, y, batch, key),
                                                   "asr": asr(config, predictions(one, xr, batch, key), y)}
      report["purification"][sampler][name] = res
      if sampler == first:
        if name == "benign":
          xt = purifier.make_schedule().q_sample(2 * jnp.asarray(xr[:n_grid]) - 1, jnp.full((n_grid,), p.t_bar - 1.0),
                                                 jax.random.normal(key, xr[:n_grid].shape))
          grid_rows.append(np.asarray(jnp.clip((xt + 1) / 2, 0, 1)))
        grid_rows.append(np.asarray(jit_apply(purifier, prm["denoiser"], xr[:n_grid], key)))
  if config.diff2.sweep_t_bar:  # Figure 4: ASR against t̄
    sweep = {"t_bar": list(config.diff2.sweep_t_bar)}
    for t_bar in config.diff2.sweep_t_bar:
      logits = PurifiedClassifier(purifier_from_config(config, denoiser, first, t_bar=t_bar), classifier)
      for name in MODELS:
        f = functools.partial(jit_apply, logits, params[name])
        sweep.setdefault(name, {}).setdefault("asr", []).append(asr(config, predictions(f, xr, batch, key), y))
    report["sweep_t_bar"] = sweep
  save_grid(None, os.path.join(workdir, "figure3.png"), rows=grid_rows, scale=e.grid_scale)
  return report, xr


def certification(config, workdir, classifier, denoiser, params, x, y, xr, idx, trigger_fp):
  """Table 6: certified ACC of clean and trigger inputs through f∘φ and f∘φ* (denoised smoothing).
  One resumable TSV per (model, inputs) in WORKDIR/certify/, fingerprinted with the models' digests and,
  for trigger inputs, the trigger's fingerprint ``trigger_fp``."""
  c, d = config.certify, config.purify.diffusion
  sigma = c.sigmas[0]
  n_img = min(len(x), c.num_images)
  out = {"sigma": sigma, "radii": list(c.radii), "n": c.n}
  key = jax.random.key(config.seed + 13)
  base = DenoisedClassifier(denoiser, classifier, num_steps=c.denoise_steps, schedule=d.schedule,
                            num_timesteps=d.num_timesteps)
  denoisers = {"benign": config.purify.denoiser, "backdoored": os.path.join(workdir, "finetune", "export")}
  for name in MODELS:
    out[name] = {}
    for kind, inputs in (("clean", x), ("trigger", xr)):
      tsv = os.path.join(workdir, "certify", f"{name}_{kind}_sigma{sigma:g}.tsv")
      fp = {**fingerprint(config, *CERTIFY_FIELDS, models={"classifier": config.classifier.path,
                                                           "denoiser": denoisers[name]}),
            "sigma": sigma, "trigger": trigger_fp if kind == "trigger" else None}
      certify_dataset(base, inputs[:n_img], y[:n_img], idx[:n_img], tsv, key=key, sigma=sigma,
                      num_classes=c.num_classes, n0=c.n0, n=c.n, alpha=c.alpha, batch_size=c.batch_size,
                      params=params[name], fingerprint=fp, overwrite=config.overwrite,
                      desc=f"certify {name}/{kind}")
      out[name][kind] = certified_accuracy(read_tsv(tsv), c.radii)
  return out


def transfer(config, denoiser, params, x, y, xr):
  """Table 3: clean ACC and ASR of other classifiers behind φ and φ* (first sampler)."""
  out = {}
  purifier = purifier_from_config(config, denoiser, config.purify.samplers[0])
  batch = config.eval.batch_size
  for path in config.diff2.transfer_classifiers:
    clf, cvars = load_classifier(path, "config.diff2.transfer_classifiers")
    logits = PurifiedClassifier(purifier, clf)
    out[path] = {}
    for name in MODELS:
      f = functools.partial(jit_apply, logits, {**params[name], "classifier": cvars})
      out[path][name] = {"clean_acc": accuracy(f, x, y, batch, jax.random.key(1)),
                         "asr": asr(config, predictions(f, xr, batch, jax.random.key(2)), y)}
  return out
