"""Task ``diff2``: trigger → backdoor fine-tuning → evaluation of benign φ vs backdoored φ* (DIFF2 §3–5).

Stages are resumable: WORKDIR/trigger.npy, WORKDIR/finetune/{checkpoints,export}, then the evaluation
writes WORKDIR/report.{json,md} (pinned format: attack, purification[sampler][benign|backdoored], and
certification) and WORKDIR/figure3.png. Figures 5–6 run one sub-run per swept value.
"""
from __future__ import annotations

import io
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import attacks
from jaxdiff.backdoor import InputSpecificTrigger, corner_mask, diff2_loss, make_trigger, optimize_trigger
from jaxdiff.convert import export_model
from jaxdiff.data import host_batches, make_source, prefetch
from jaxdiff.fingerprints import canonical, check_or_record
from jaxdiff.functional import Apply
from jaxdiff.io import MetricWriter, atomic_write
from jaxdiff.models import eps_apply
from jaxdiff.parallel import make_mesh
from jaxdiff.report import save_grid, write_report
from jaxdiff.tasks.common import (eval_subset, fingerprint, load_classifier, load_denoiser, reuse_export,
                                  schedule_from_config)
from jaxdiff.tasks.config import validate
from jaxdiff.tasks.diff2.defenses import run_defense
from jaxdiff.tasks.diff2.evaluate import certification, evaluate, transfer
from jaxdiff.tasks.diff2.report import SWEEP_FIGURES, plot_sweep, report_markdown
from jaxdiff.train import fit

# diff2 keys that only change the evaluation, not φ*
EVAL_ONLY = ("sweep_t_bar", "sweep_alpha", "sweep_trigger_size", "transfer_classifiers", "stop_after")


TRIGGER_FIELDS = ("seed", "data", "diff2.trigger", "diff2.alpha", "diff2.patch_size", "diff2.pattern", "diff2.targeted",
                  "diff2.target_class", "diff2.trigger_steps", "diff2.trigger_lr", "diff2.trigger_batch",
                  "diff2.input_specific_steps")


def trigger_fingerprint(config):
  """What the trigger (and so every trigger input) depends on, surrogate weights included."""
  return fingerprint(config, *TRIGGER_FIELDS,
                     models={f"surrogate{i}": p for i, p in enumerate(config.diff2.surrogates)})


def build_trigger(config, workdir, surrogates, src, mesh):
  """The trigger of ``config.diff2``: an optimised universal r (Alg. 1 l.1–3, stored in WORKDIR/trigger.npy),
  input-specific (§5.5), or a patch / blend / warp pattern (Alg. 2). ``surrogates``: [(module, variables)]."""
  d = config.diff2
  size, ch = config.data.image_size, config.model.in_channels
  key = jax.random.key(config.seed + 7)
  path = os.path.join(workdir, "trigger.npy")
  fns = tuple(Apply(m) for m, _ in surrogates)
  if d.trigger == "input_specific":  # a PGD-optimised r per input, no universal r to store
    return InputSpecificTrigger(fns, d.alpha, d.input_specific_steps, d.targeted, d.target_class)
  r = None
  if d.trigger == "adversarial":
    reusable = check_or_record(os.path.join(workdir, "trigger.fingerprint.json"), trigger_fingerprint(config),
                               what="the trigger (trigger.npy)", overwrite=config.overwrite)
    if reusable and os.path.exists(path):
      r = np.load(path, allow_pickle=False)
    else:
      mask = corner_mask(size, d.patch_size) if d.patch_size else None
      batches = ((b["image"], b["label"]) for _, b in prefetch(host_batches(src, d.trigger_batch, seed=config.seed + 1),
                                                               mesh))
      writer = MetricWriter(workdir)
      r = np.asarray(optimize_trigger(fns, batches, key=key, shape=(size, size, ch), alpha=d.alpha,
                                      steps=d.trigger_steps, lr=d.trigger_lr, mask=mask, targeted=d.targeted,
                                      target_class=d.target_class, mesh=mesh, params=[v for _, v in surrogates],
                                      log=lambda i, m: writer.write(i, m, prefix="")))
      buf = io.BytesIO()
      np.save(buf, r)
      atomic_write(path, buf.getvalue())
      save_grid(r[None], os.path.join(workdir, "trigger.png"), scale=8)
  kind = "blend" if d.trigger == "adversarial" else d.trigger
  return make_trigger(kind, size, ch, key=key, alpha=d.alpha, patch_size=d.patch_size or None, r=r, pattern=d.pattern)


def finetune_fingerprint(config):
  """What φ* depends on: the diff2 block without its evaluation-only keys, the optimiser and the batch
  (``train.num_steps`` may grow on resume). Stored with the checkpoints and the export."""
  models = {"denoiser": config.purify.denoiser, **{f"surrogate{i}": p for i, p in enumerate(config.diff2.surrogates)}}
  fp = canonical(fingerprint(config, "diff2", "optim.name", "train.batch_size", models=models))
  fp["diff2"] = {k: v for k, v in fp["diff2"].items() if k not in EVAL_ONLY}
  return fp


def finetune(config, workdir, trigger, surrogates, src, mesh, schedule):
  """Backdoor fine-tuning of the benign denoiser (Alg. 1 l.4–8) through the shared runner → φ* params."""
  d = config.diff2
  out = os.path.join(workdir, "finetune")
  fp = finetune_fingerprint(config)
  export_dir = os.path.join(out, "export")
  params = reuse_export(export_dir, fp, config.overwrite, steps=config.train.num_steps)
  if params is not None:
    return params
  model, params, meta = load_denoiser(config)
  frozen = [v for _, v in surrogates]  # surrogate weights: arguments of the step, not constants
  reverse_target = None
  if d.trigger not in ("adversarial", "input_specific") and d.scheme == "diff2" and d.reverse_target == "adversarial":
    f = Apply(surrogates[0][0])  # Alg. 2: the reverse process should output an adversarial x̃_r

    def reverse_target(xr, k, fr):
      return attacks.pgd(f, xr, jnp.argmax(f(fr[0], xr), -1), key=k, eps=d.reverse_eps, steps=d.reverse_steps,
                         targeted=d.targeted, target=jnp.full(xr.shape[:1], d.target_class), params=fr[0])
  loss = diff2_loss(schedule, trigger.apply, lam=d.lam, t_trunc=d.t_trunc, entangled=d.entangled,
                    reverse_target=reverse_target, poison_rate=d.poison_rate or None, scheme=d.scheme,
                    noise_trigger=getattr(trigger, "pattern", None), gamma=d.trojdiff_gamma)

  def export(state):
    export_model(export_dir, "unet", meta["model"], {"params": _final(config, state)},
                 {"diffusion": meta.get("diffusion"), "diff2": d.to_dict(), "fingerprint": fp,
                  "steps": int(state.step)})

  state, _ = fit(model, {"params": params}, loss, src, config=config, workdir=out, mesh=mesh, fingerprint=fp,
                 frozen=frozen, export=export, desc="diff2 fine-tune", apply_fn=eps_apply(model))
  return _final(config, state)


def _final(config, state):
  return state.ema_params if config.train.use_ema else state.params


def sweep_point_config(config, name, value):
  """The config of one Figure-5/6 point: ``diff2.alpha`` = value, or a value×value trigger patch (full size
  when value ≥ image size); evaluated with the first sampler only, no certification, no nested sweeps."""
  c = ml_collections.ConfigDict(config.to_dict())
  if name == "alpha":
    c.diff2.alpha = float(value)
  elif name == "trigger_size":
    c.diff2.patch_size = 0 if int(value) >= config.data.image_size else int(value)
  else:
    raise ValueError(f"unknown sweep {name!r}; use 'alpha' or 'trigger_size'")
  c.diff2.update(sweep_alpha=(), sweep_trigger_size=(), sweep_t_bar=(), transfer_classifiers=(), stop_after="")
  c.purify.update(samplers=(config.purify.samplers[0],), one_step=False)
  c.certify.n = 0
  return c


def run_point(point, workdir):
  """The report of a sub-run (a sweep point, a defence's setting) with config ``point`` in ``workdir``: read
  back while its report.json exists and the point's whole config (its fingerprint) is unchanged, else run. Another
  config re-runs the evaluation (its fine-tune stays guarded by its own fingerprint); replacing a stale
  evaluation loses nothing, so a changed point is not an error."""
  same = check_or_record(os.path.join(workdir, "point.fingerprint.json"), point.to_dict(), what="the sub-run",
                         overwrite=True)
  path = os.path.join(workdir, "report.json")
  return json.load(open(path)) if same and os.path.exists(path) else run_diff2(point, workdir)


def run_sweep(config, workdir, name, report):
  """{name: [values], "benign"|"backdoored": {metric: [per value]}} for the first sampler. Each point runs
  in WORKDIR/sweep_<name>/<name>=<value>/ (``run_point``); the point equal to the main config reuses the main
  evaluation."""
  values = list(config.diff2[f"sweep_{name}"])
  first = config.purify.samplers[0]
  current = config.diff2.alpha if name == "alpha" else (config.diff2.patch_size or config.data.image_size)
  out = {name: values, "benign": {}, "backdoored": {}}
  for v in values:
    if v == current:
      res = report["purification"][first]
    else:
      sub = run_point(sweep_point_config(config, name, v), os.path.join(workdir, f"sweep_{name}", f"{name}={v:g}"))
      res = sub["purification"][first]
    for m in ("benign", "backdoored"):
      for k, val in res[m].items():
        out[m].setdefault(k, []).append(val)
  return out


def stage_inputs(config):
  """What the trigger and fine-tuning stages take: (mesh, (classifier, its variables), surrogates
  [(module, variables)], the training source, the schedule)."""
  mesh = make_mesh()
  surrogates = [load_classifier(path, "config.diff2.surrogates") for path in config.diff2.surrogates]
  return (mesh, load_classifier(config.classifier.path, dtype=config.classifier.dtype), surrogates, make_source(config.data, "train"),
          schedule_from_config(config.purify.diffusion))


def run_diff2(config, workdir):
  validate(config)
  d = config.diff2
  mesh, (classifier, cvars), surrogates, src, schedule = stage_inputs(config)
  clock = {"start": time.time()}
  trigger = build_trigger(config, workdir, surrogates, src, mesh)
  clock["trigger"] = time.time()
  if d.stop_after == "trigger":
    return None
  backdoored = finetune(config, workdir, trigger, surrogates, src, mesh, schedule)
  clock["finetune"] = time.time()
  if d.stop_after == "finetune":  # e.g. build φ* on an accelerator, evaluate it elsewhere later
    return None
  denoiser, benign, _ = load_denoiser(config)
  x, y, idx = eval_subset(config)
  params = {"benign": {"denoiser": benign, "classifier": cvars},
            "backdoored": {"denoiser": backdoored, "classifier": cvars}}
  frozen = [v for _, v in surrogates]
  report, xr = evaluate(config, workdir, trigger, frozen, classifier, denoiser, params, x, y)
  if config.get("defense") and config.defense.name:
    run_defense(config, workdir, report, classifier, denoiser, params, x, y, xr)
  clock["evaluate"] = time.time()
  if config.certify.n:
    report["certification"] = certification(config, workdir, classifier, denoiser, params, x, y, xr, idx,
                                              trigger_fingerprint(config))
  clock["certification"] = time.time()
  if d.transfer_classifiers:
    report["transfer"] = transfer(config, denoiser, params, x, y, xr)
  clock["transfer"] = time.time()
  if "sweep_t_bar" in report:
    plot_sweep(report["sweep_t_bar"], "t_bar", os.path.join(workdir, "figure4.png"))
  for name in ("alpha", "trigger_size"):  # Figures 5–6: one sub-run (trigger, fine-tune, evaluation) per value
    if d[f"sweep_{name}"]:
      write_report(workdir, report, report_markdown(config, report))  # a kill during the sweep loses nothing
      report[f"sweep_{name}"] = run_sweep(config, workdir, name, report)
      plot_sweep(report[f"sweep_{name}"], name, os.path.join(workdir, f"{SWEEP_FIGURES[name]}.png"))
  clock["sweeps"] = time.time()
  names = list(clock)  # wall seconds per stage (a resumed stage counts only its loading time)
  report["seconds"] = {b: round(clock[b] - clock[a], 1) for a, b in zip(names, names[1:])}
  write_report(workdir, report, report_markdown(config, report))
  print(report_markdown(config, report), flush=True)
  return report
