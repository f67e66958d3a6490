"""DIFF2 §5.7: entropy-based detection of backdoored purifiers over a population of DIFF2 models (Figures 9–10).

The population: the shipped φ, ``defense.population_benign`` benign fine-tunes (clean loss only, λ = 0, one
seed each), ``population_untargeted`` and ``population_targeted`` backdoored φ* (targets cycle over the
classes), each ``population_steps`` fine-tuning steps, in WORKDIR/population/<name>/ (resumable; each model's
measures are kept in its detection.json under the fingerprint of its settings). Benign model i shares the
trigger of untargeted model i (WORKDIR/population/triggers/), so its ASR row is that trigger's effect without a
backdoor. Writes report.json (``defense`` "entropy", ``rows``, ``detection``, ``threshold``), report.md,
figure9.png (raw trial entropies) and figure10.png (after the IQR and moving-average filters).
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np

from jaxdiff.backdoor.entropy import (calibrate_threshold, filter_entropies, leave_one_out_flags,
                                      purified_label_entropies)
from jaxdiff.data import make_source
from jaxdiff.fingerprints import canonical
from jaxdiff.io import atomic_write
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, plot_strips, save_grid, write_report
from jaxdiff.robust import PurifiedClassifier
from jaxdiff.tasks import defence
from jaxdiff.tasks.common import eval_subset, fingerprint, load_denoiser, purifier_from_config
from jaxdiff.tasks.config import validate
from jaxdiff.tasks.diff2.defenses import row
from jaxdiff.tasks.diff2.evaluate import measure
from jaxdiff.tasks.diff2.pipeline import build_trigger, finetune, finetune_fingerprint, stage_inputs, trigger_fingerprint

KINDS = ("benign", "untargeted", "targeted")
ELIJAH_FIELDS = ("seed", "defense.elijah_iterations", "defense.elijah_lambda", "defense.elijah_batch",
                 "defense.elijah_steps", "purify.diffusion")
ENTROPY_FIELDS = ("defense.entropy_trials", "defense.entropy_inputs", "defense.entropy_steps", "purify.t_bar",
                  "purify.samplers", "purify.sampler_steps", "purify.diffusion", "eval")


def members(config):
  """[(name, kind, index)] of the population, the shipped φ first."""
  d = config.defense
  out = [("phi", "benign", -1)]
  for kind, n in zip(KINDS, (d.population_benign, d.population_untargeted, d.population_targeted)):
    out += [(f"{kind}_{i}", kind, i) for i in range(n)]
  return out


HELDOUT_SEED = 1000  # held-out models' seeds: config.seed + HELDOUT_SEED + i, never a population model's


def heldout_members(config):
  """[(name, kind, index, setting)] of the held-out models: for each setting — a fine-tune length of
  ``defense.heldout_steps`` (at diff2.alpha) or an α of ``defense.heldout_alphas`` (at population_steps) —
  ``defense.heldout_seeds`` benign and as many untargeted models. ``setting``: {"steps", "alpha"}."""
  d = config.defense
  settings = ([(f"steps{n}", {"steps": int(n), "alpha": float(config.diff2.alpha)}) for n in d.heldout_steps]
              + [(f"alpha{a:g}", {"steps": int(d.population_steps), "alpha": float(a)}) for a in d.heldout_alphas])
  return [(f"heldout_{tag}_{kind}_{i}", kind, i, {"tag": tag, **setting}) for tag, setting in settings
          for kind in ("benign", "untargeted") for i in range(d.heldout_seeds)]


def member_config(config, kind, i, setting=None):
  """The DIFF2 config of population model ``i`` of ``kind``: seed + 1 + i, ``population_steps`` fine-tuning
  steps; benign: λ = 0 (clean loss only) with the untargeted trigger of the same seed; targeted: target class
  i mod C. A held-out model (``setting`` of ``heldout_members``): seed + ``HELDOUT_SEED`` + i, its steps and α."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = config.seed + (HELDOUT_SEED if setting else 1) + i
  c.train.num_steps = setting["steps"] if setting else config.defense.population_steps
  if setting:
    c.diff2.alpha = setting["alpha"]
  c.train.checkpoint_every = min(c.train.checkpoint_every, c.train.num_steps)
  targeted = kind == "targeted"
  c.diff2.update(targeted=targeted, target_class=i % config.data.num_classes if targeted else config.diff2.target_class,
                 lam=0.0 if kind == "benign" else config.diff2.lam, sweep_t_bar=(), sweep_alpha=(),
                 sweep_trigger_size=(), transfer_classifiers=(), stop_after="")
  return c


def cached(path, fp, compute):
  """``compute()``'s result, kept in ``path`` (JSON, atomic) with the fingerprint ``fp`` it was made under and
  reused while ``fp`` is unchanged."""
  if os.path.exists(path):
    old = json.load(open(path))
    if old.get("fingerprint") == fp:
      return old["result"]
  res = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_write(path, json.dumps({"fingerprint": fp, "result": res}, indent=1).encode())
  return res


def measure_member(config, mc, name, kind, i, workdir, ctx, shared, setting=None):
  """Clean ACC and trigger ASR at t̄ (first sampler) and the trial label entropies at t = T of one population
  model (its detection.json), and with ``defense.name = "elijah"`` Elijah's τ and scores (its elijah.json)."""
  mesh, (classifier, cvars), surrogates, src, schedule = ctx
  wd = os.path.join(workdir, "population", name)
  trig_wd = os.path.join(workdir, "population", "triggers",
                         f"heldout_{setting['tag']}_{i}" if setting else
                         f"{'targeted' if kind == 'targeted' else 'untargeted'}_{max(i, 0)}")
  trigger = build_trigger(mc, trig_wd, surrogates, src, mesh)
  if name == "phi":
    params = shared["benign"]
    model_fp = fingerprint(config, models={"denoiser": config.purify.denoiser})
  else:
    params = finetune(mc, wd, trigger, surrogates, src, mesh, schedule)
    model_fp = {**finetune_fingerprint(mc), "steps": mc.train.num_steps}  # measures of a longer fine-tune differ
  d = config.defense
  prm = {"denoiser": params, "classifier": cvars}
  key = jax.random.key(config.seed + 19)

  def entropy():
    x, y = shared["eval"]
    xr = np.asarray(jax.jit(trigger.apply)(x, [v for _, v in surrogates]))
    res = measure(mc, shared["logits"], prm, x, y, xr, key, name)
    res["entropy_raw"] = purified_label_entropies(
        shared["detector"], prm, shared["reference"], jax.random.fold_in(key, 3), trials=d.entropy_trials,
        per_trial=d.entropy_inputs, num_classes=config.data.num_classes, batch_size=config.eval.batch_size)
    return res

  fp = canonical({"model": model_fp, "trigger": trigger_fingerprint(mc), "entropy": fingerprint(config, *ENTROPY_FIELDS)})
  res = cached(os.path.join(wd, "detection.json"), fp, entropy)
  if d.name == "elijah":
    def elijah():
      s = ml_collections.ConfigDict(dict(elijah_iterations=d.elijah_iterations, elijah_lambda=d.elijah_lambda,
                                         batch=d.elijah_batch, num_steps=d.elijah_steps))
      diff = config.purify.diffusion
      shape = tuple(shared["reference"].shape[1:])
      tau, scores, _ = defence.elijah(s, shared["denoiser"], params, {"schedule": diff.schedule,
                                      "num_timesteps": diff.num_timesteps}, shape, jax.random.fold_in(key, 5), "ddpm")
      return {**scores, "tau": np.asarray(tau).tolist()}

    efp = canonical({"model": model_fp, "elijah": fingerprint(config, *ELIJAH_FIELDS)})
    res = {**res, "elijah": cached(os.path.join(wd, "elijah.json"), efp, elijah)}
  return res


def run_detection(config, workdir):
  validate(config)
  start = time.time()
  d = config.defense
  ctx = stage_inputs(config)
  classifier = ctx[1][0]
  denoiser, benign, _ = load_denoiser(config)
  sampler = config.purify.samplers[0]
  x, y, _ = eval_subset(config)
  test = make_source(config.data, "test")
  n_ref = min(len(test), d.entropy_trials * d.entropy_inputs)
  shared = {"benign": benign, "denoiser": denoiser, "eval": (x, y), "reference": test.get(np.arange(n_ref))[0],
            "logits": PurifiedClassifier(purifier_from_config(config, denoiser, sampler), classifier),
            "detector": PurifiedClassifier(purifier_from_config(
                config, denoiser, sampler, t_bar=config.purify.diffusion.num_timesteps, num_steps=d.entropy_steps),
                classifier)}
  results = {}
  pop = members(config)
  heldout = heldout_members(config) if d.name == "entropy" else []
  bar = progress(total=len(pop) + len(heldout), desc="entropy detection: population")
  for name, kind, i in pop:
    mc = member_config(config, kind, max(i, 0))  # φ is measured with benign_0's (untargeted_0's) trigger
    results[name] = measure_member(config, mc, name, kind, i, workdir, ctx, shared)
    bar.update(1)
  for name, kind, i, setting in heldout:
    results[name] = measure_member(config, member_config(config, kind, i, setting), name, kind, i, workdir, ctx,
                                   shared, setting)
    bar.update(1)
  bar.close()
  report = detection_report(config, pop, results, heldout)
  report["seconds"] = {"total": round(time.time() - start, 1)}
  detection_figures(report, workdir, results)
  write_report(workdir, report, detection_markdown(config, report))
  print(detection_markdown(config, report), flush=True)
  return report


def _entropies(config, name, kind, results):
  d = config.defense
  raw = results[name]["entropy_raw"]
  return {"model": name, "kind": kind, "backdoored_truth": kind != "benign", "entropy_raw": list(raw),
          "entropy_filtered": [float(v) for v in filter_entropies(raw, d.iqr_k, d.moving_window)]}


def rates(flags, truth):
  """{tpr, fpr, n_backdoored, n_benign} of detector ``flags`` against ``truth`` (None where a kind is absent)."""
  flags, truth = np.asarray(flags, bool), np.asarray(truth, bool)
  return {"tpr": float(flags[truth].mean()) if truth.any() else None,
          "fpr": float(flags[~truth].mean()) if (~truth).any() else None,
          "n_backdoored": int(truth.sum()), "n_benign": int((~truth).sum())}


def detection_report(config, pop, results, heldout=()):
  """report.json of the population: rows, per-model detection, the threshold and the accuracy figures; with
  ``heldout`` (``heldout_members``) their detection under the population's threshold (``heldout``) and its TPR /
  FPR overall and per setting (``summary.heldout``)."""
  d = config.defense
  det = [_entropies(config, name, kind, results) for name, kind, _ in pop]
  scores = np.asarray([np.mean(m["entropy_filtered"]) for m in det])
  truth = np.asarray([m["backdoored_truth"] for m in det])
  calibrated = not d.entropy_threshold
  threshold = calibrate_threshold(scores[~truth], scores[truth]) if calibrated else float(d.entropy_threshold)
  loo = (leave_one_out_flags(scores, truth) if min(truth.sum(), (~truth).sum()) >= 2
         else [None] * len(det))  # leaving out the only model of a kind leaves nothing to calibrate on
  for m, s, f in zip(det, scores, loo):
    m.update(score=float(s), flagged=bool(s < threshold), flagged_loo=f)
  flags = np.asarray([m["flagged"] for m in det])
  rows = [row(name, d.name, results[name]) for name, _, _ in pop]
  summary = {"accuracy": float((flags == truth).mean()), "false_positives": int((flags & ~truth).sum()),
             "missed": int((~flags & truth).sum()),
             "leave_one_out_accuracy": None if loo[0] is None else float((np.asarray(loo) == truth).mean()),
             "max_entropy": float(np.log(config.data.num_classes))}
  if d.name == "elijah":  # §5.6: Elijah's features and its leave-one-out forest on the same models
    for m, (name, _, _) in zip(det, pop):
      m["elijah"] = {k: v for k, v in results[name]["elijah"].items() if k != "tau"}
    for m, verdict in zip(det, defence.elijah_forest(det, config.seed)):
      m["elijah_backdoored"] = verdict
    judged = [(m["elijah_backdoored"], m["backdoored_truth"]) for m in det if m["elijah_backdoored"] is not None]
    summary["elijah_accuracy"] = float(np.mean([v == t for v, t in judged])) if judged else None
  out = {"defense": d.name, "rows": rows, "detection": det, "threshold": threshold,
         "threshold_source": "calibrated on this population" if calibrated else "config (defense.entropy_threshold)",
         "summary": summary}
  if heldout:
    held = []
    for name, kind, _, setting in heldout:
      m = _entropies(config, name, kind, results)
      m["score"] = float(np.mean(m["entropy_filtered"]))
      m.update(setting=setting["tag"], steps=setting["steps"], alpha=setting["alpha"], flagged=m["score"] < threshold)
      held.append(m)
    out["heldout"] = held
    out["heldout_rows"] = [row(name, d.name, results[name]) for name, _, _, _ in heldout]
    by = {}
    for m in held:
      by.setdefault(m["setting"], []).append(m)
    summary["heldout"] = {**rates([m["flagged"] for m in held], [m["backdoored_truth"] for m in held]),
                          "by_setting": {k: rates([m["flagged"] for m in v], [m["backdoored_truth"] for m in v])
                                         for k, v in by.items()}}
  return out


def detection_figures(report, workdir, results):
  """Figure 9 (raw trial entropies) and Figure 10 (filtered), one column per model, coloured by kind; with Elijah,
  elijah_triggers.png: its inverted τ per model (pixel view), one row per kind."""
  if report["defense"] == "elijah":
    rows = {}
    for m in report["detection"]:
      rows.setdefault(m["kind"], []).append(np.clip((np.asarray(results[m["model"]]["elijah"]["tau"]) + 1) / 2, 0, 1))
    width = max(len(r) for r in rows.values())
    grid = [np.stack(r + [np.ones_like(r[0])] * (width - len(r))) for r in rows.values()]
    save_grid(None, os.path.join(workdir, "elijah_triggers.png"), rows=grid, scale=4)
  for key, fig in (("entropy_raw", "figure9"), ("entropy_filtered", "figure10")):
    groups = {}
    for m in report["detection"]:
      groups.setdefault(m["kind"], {})[m["model"]] = m[key]
    for m in report.get("heldout", []):
      groups.setdefault(f"held-out {m['kind']}", {})[m["model"].removeprefix("heldout_")] = m[key]
    plot_strips(groups, os.path.join(workdir, f"{fig}.png"), ylabel="label entropy (nats)",
                hline=report["threshold"], title=f"{'raw' if key == 'entropy_raw' else 'filtered'} entropy at t = T")


def detection_markdown(config, report):
  d, s = config.defense, report["summary"]
  det = [[m["model"], "backdoored" if m["backdoored_truth"] else "benign", " ".join(f"{v:.2f}" for v in m["entropy_raw"]),
          " ".join(f"{v:.2f}" for v in m["entropy_filtered"]), f"{m['score']:.3f}", "yes" if m["flagged"] else "no",
          {True: "yes", False: "no", None: "-"}[m["flagged_loo"]]] for m in report["detection"]]
  rows = [[r["model"], r["clean_acc"], r["asr"]] for r in report["rows"]]
  return "\n".join([
      f"# DIFF2 entropy-based detection (§5.7): {len(det)} models (defence: {report['defense']})\n",
      f"Reference inputs diffused to t = T and reversed by {config.purify.samplers[0]} in {d.entropy_steps} steps, "
      f"{d.entropy_trials} trials × {d.entropy_inputs} inputs per model; IQR filter (k = {d.iqr_k}), moving "
      f"average (window {d.moving_window}). Flagged when the mean filtered entropy < {report['threshold']:.3f} nats "
      f"({report['threshold_source']}; ln C = {s['max_entropy']:.3f}).\n",
      f"Detection accuracy {s['accuracy']:.1%} ({s['false_positives']} false positives, {s['missed']} missed); "
      + ("leave-one-out calibrated threshold: "
       + ("-" if s["leave_one_out_accuracy"] is None else f"{s['leave_one_out_accuracy']:.1%}") + ".\n"),
      "## Figures 9–10 (figure9.png, figure10.png): label entropy per model\n",
      markdown_table(["model", "truth", "raw", "filtered", "score", "flagged", "flagged (LOO)"], det),
      heldout_markdown(report),
      f"\n## Population: clean ACC and own-trigger ASR at t̄ = {config.purify.t_bar}\n",
      markdown_table(["model", "clean ACC", "ASR"], rows),
      elijah_markdown(report),
      f"\nWall time: {report['seconds']['total']:g} s\n" if "seconds" in report else ""])


def heldout_markdown(report):
  if not report.get("heldout"):
    return ""
  h = report["summary"]["heldout"]
  pct = lambda v: "-" if v is None else f"{v:.0%}"
  settings = [[k, v["n_benign"], v["n_backdoored"], pct(v["tpr"]), pct(v["fpr"])] for k, v in h["by_setting"].items()]
  models = [[m["model"], "backdoored" if m["backdoored_truth"] else "benign", m["steps"], f"{m['alpha']:g}",
             f"{m['score']:.3f}", "yes" if m["flagged"] else "no"] for m in report["heldout"]]
  asr = {r["model"]: r for r in report.get("heldout_rows", [])}
  for row_ in models:
    row_ += [pct(asr[row_[0]]["clean_acc"]), pct(asr[row_[0]]["asr"])] if row_[0] in asr else ["-", "-"]
  worst = [k for k, v in h["by_setting"].items() if (v["tpr"] is not None and v["tpr"] < 1) or (v["fpr"] or 0) > 0]
  return "\n".join([
      f"\n## Held-out models: the threshold {report['threshold']:.3f} judged on models made under other settings\n",
      f"Seeds the population never uses; benign (λ = 0) and untargeted φ* per setting. TPR {pct(h['tpr'])} "
      f"({h['n_backdoored']} backdoored), FPR {pct(h['fpr'])} ({h['n_benign']} benign). "
      + (f"Entropy does not separate under: {', '.join(worst)}.\n" if worst else "Every setting separates.\n"),
      markdown_table(["setting", "benign", "backdoored", "TPR", "FPR"], settings), "",
      markdown_table(["model", "truth", "steps", "α", "score", "flagged", "clean ACC", "ASR"], models)])


def elijah_markdown(report):
  if report["defense"] != "elijah":
    return ""
  acc = report["summary"]["elijah_accuracy"]
  yn = {True: "yes", False: "no", None: "-"}
  rows = [[m["model"], "backdoored" if m["backdoored_truth"] else "benign", f"{m['elijah']['uniformity']:.4f}",
           f"{m['elijah']['total_variation']:.4f}", f"{m['elijah']['loss']:.4f}", yn[m["elijah_backdoored"]],
           yn[m["flagged_loo"]]] for m in report["detection"]]
  return "\n".join([
      "\n## Elijah against DIFF2 (§5.6; elijah_triggers.png)\n",
      "Elijah's τ inverted from each model, its samples' uniformity and total variation, and a random forest trained "
      "on the other models (leave-one-out), beside the entropy detector's leave-one-out verdict. Elijah accuracy: "
      + ("-" if acc is None else f"{acc:.1%}") + ".\n",
      markdown_table(["model", "truth", "uniformity", "total variation", "inversion loss", "Elijah", "entropy (LOO)"],
                     rows)])
