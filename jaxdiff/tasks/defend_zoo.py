"""Task ``defend_zoo``: every defence over every model of a zoo (Diff-Cleanse Tables 1–4 on the zoo task's models).

Reads the models the zoo task exported to ``defend.zoo_workdir``/models/<name> (the same config: its ``zoo``
block names them and their real triggers). Per model:
- detection: BBTI with the backdoor sampling each model is meant for (its zoo ``sampler``: DDPM for
  BadDiffusion-type and the clean models, DDIM for VillanDiffusion/TrojDiff; TrojDiff models through TrojDiff's
  sampling from γε + r — the paper's protocol), or with every sampling of the scan block (``scan.samplers`` ×
  ``scan.trojan_gammas``; ``defend.bbti_samplers = "scan"``); backdoored when an MSCR reaches κ_d (and, with
  ``scan.confirm_batch``, fresh noise with r does too); the inverted
  trigger's ASR against the model's real target (Table 1), BBTI without ℓ_e on backdoored models (Table 3);
  Elijah's τ and features (uniformity, total variation), judged by a random forest trained on the other
  models' features (leave-one-out; Elijah's detector in Diff-Cleanse's comparison); on backdoored models the
  cosine of BBTI's r and of Elijah's τ to the real trigger (``trigger_cosine``; model space, from the cached
  triggers at report time), which tells a missed inversion from a failed repair;
- removal, backdoored models only: Diff-Cleanse (prune by I^b − I^c with the inverted trigger, fine-tune with
  loss_p, and loss_c as Table 4's ablation) and Diff-Pruning (prune by smallest I^c), both at ``scan.remove_ratio``
  and at each of ``defend.ratios``; the same fine-tune with nothing pruned as the control (``defend.finetune_only``);
  ASR with the real trigger and FID of clean samples before and after (Table 2).
Writes WORKDIR/report.{json,md} (pinned: report.json "detection" and "removal" lists) and triggers.png (rows:
real trigger, BBTI's r, Elijah's τ; a column per backdoored model). Per model results are cached in
WORKDIR/models/<name>/defend.json with the settings that made them, so a rerun resumes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff.backdoor import input_detection as input_lib
from jaxdiff.backdoor import pruning
from jaxdiff.backdoor.inversion import cosine_matrix
from jaxdiff.convert import load_model
from jaxdiff.errors import ConfigError
from jaxdiff.fingerprints import canonical
from jaxdiff.io import atomic_write, write_json
from jaxdiff.metrics import fid
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, save_grid
from jaxdiff.tasks import defence
from jaxdiff.tasks.config import REMOVAL_KEYS, validate
from jaxdiff.tasks.generation import Judge, backdoor_of, generate, specs

DETECT_KEYS = ("samplers", "trojan_gammas", "num_steps", "iterations", "batch", "lr", "kappa", "kappa_d",
               "confirm_batch", "restarts", "patience", "budget", "min_entropy", "kappa_plus", "kappa_minus",
               "use_entropy", "trigger_init", "encoder", "encoder_path", "elijah_iterations", "elijah_lambda",
               "terd_iterations", "terd_refine_iterations", "terd_batch", "terd_lr", "terd_weight_decay",
               "terd_sampler", "terd_steps", "terd_clip_norm", "terd_form", "terd_gamma", "terd_kl_threshold", "ufid_copies",
               "ufid_scale", "disdet_bins", "input_fpr")


CLASS_TARGET_ATTACKS = ("trojdiff_in_d2d", "trojdiff_out_d2d")  # targets are a class of images, not one image


def _load(config, name):
  path = os.path.join(config.defend.zoo_workdir, "models", name)
  if not os.path.isfile(os.path.join(path, "meta.json")):
    raise ConfigError(f"config.defend.zoo_workdir = {config.defend.zoo_workdir!r} has no model {name!r} "
                      f"({path}/meta.json missing): run the zoo task with this config into that workdir first")
  return load_model(path, kind="unet")


def bbti_modes(config, spec):
  """(name, sampler, γ) of the backdoor samplings BBTI runs on a zoo model: with ``defend.bbti_samplers = "model"``
  the model's own (its zoo sampler from ε + r; a TrojDiff model's with TrojDiff's sampling at its γ, as Diff-Cleanse
  samples TrojDiff models; D2D models with κ = ``defend.class_kappa``), else every one of the scan block's
  (``defence.bbti_modes``)."""
  if config.defend.bbti_samplers != "model":
    return defence.bbti_modes(config.scan)
  backdoor = backdoor_of(config, spec)
  gamma = float(backdoor.gamma) if backdoor is not None and backdoor.trojan else 0.0
  return [defence.bbti_mode(spec.sampler, gamma)]


def detect(config, name, spec, model, params, meta, judge, shape, encode):
  """The detection record of one model (BBTI per backdoor sampling, its no-ℓ_e ablation, Elijah's features)."""
  s = config.scan
  if config.defend.bbti_samplers == "model" and spec.attack in CLASS_TARGET_ATTACKS:  # the paper's κ for D2D
    s = ml_collections.ConfigDict({**s.to_dict(), "kappa": config.defend.class_kappa})
  d = meta.get("diffusion") or config.diffusion.to_dict()
  key = jax.random.key(config.seed + 101)
  backdoor = backdoor_of(config, spec)
  rec = {"model": name, "attack": spec.attack, "backdoored_truth": backdoor is not None, "bbti": {}, "seconds": {}}
  best = None
  modes = bbti_modes(config, spec)
  start = time.time()
  for i, (mode, sampler, gamma) in enumerate(modes):
    out = defence.bbti(s, model, params, d, shape, encode, jax.random.fold_in(key, i), sampler, gamma=gamma)
    rec["bbti"][mode] = {"backdoored": out["backdoored"], "mscr": out["mscr"], "iterations": len(out["history"]),
                         "attempts": out["attempts"], "sampler": sampler, "trojan_gamma": gamma,
                         "init_offset": out["init_offset"],  # the start c of scan.trigger_init = offsets
                         "confirm_mscr": out["confirm_mscr"]}  # on fresh noise (scan.confirm_batch)
    if backdoor is not None:  # Table 1: the inverted trigger's ASR against the real target
      rec["bbti"][mode]["asr"] = judge.asr(backdoor, np.asarray(out["samples"]))
    if best is None or defence.verdict_rank(out) > defence.verdict_rank(best[1]):
      best = ((mode, sampler, gamma), out)
  (mode, sampler, gamma), out = best
  rec["seconds"]["bbti"] = round(time.time() - start, 1)
  rec.update(bbti_backdoored=any(v["backdoored"] for v in rec["bbti"].values()), mscr=out["mscr"],
             bbti_sampler=mode, inverted_asr=rec["bbti"][mode].get("asr"))
  if backdoor is not None and config.defend.ablations:  # Table 3: ℓ_s alone
    alone = defence.bbti(s, model, params, d, shape, encode, jax.random.fold_in(key, 50), sampler, use_entropy=False,
                         gamma=gamma)
    rec["bbti_similarity_only"] = {"backdoored": alone["backdoored"], "mscr": alone["mscr"],
                                   "asr": judge.asr(backdoor, np.asarray(alone["samples"]))}
  start = time.time()
  tau, scores, _ = defence.elijah(s, model, params, d, shape, jax.random.fold_in(key, 200), modes[0][1])
  rec["elijah"] = scores
  rec["seconds"]["elijah"] = round(time.time() - start, 1)
  if config.defend.terd:  # TERD's model-level verdict; its r̂ is the TERD input detector's
    t = defence.terd(s, model, params, d, shape, jax.random.fold_in(key, 300))
    rec["terd"] = {k: t[k] for k in ("kl_mean", "kl_var", "backdoored")}
    rec["seconds"]["terd"] = t["seconds"]
    if backdoor is not None:
      real = np.asarray(backdoor.trigger, np.float64).ravel()
      inv = np.asarray(t["trigger"], np.float64).ravel()
      rec["terd"]["trigger_cosine"] = float(inv @ real / max(np.linalg.norm(inv) * np.linalg.norm(real), 1e-12))
    if backdoor is not None and config.defend.input_detection:
      rec["input_detection"] = input_detection(config, spec, model, params, d, shape, encode, backdoor, t["trigger"],
                                               jax.random.fold_in(key, 400))
  return rec, np.asarray(out["trigger"]), np.asarray(tau)


def input_detection(config, spec, model, params, d, shape, encode, backdoor, terd_trigger, key):
  """Input-level detection on one backdoored model: ``defend.input_samples`` of its trigger inputs (the backdoor's
  x_T: ε + r, or TrojDiff's γε + μ) against as many clean N(0, I) inputs, for TERD (with the model's reversed r̂),
  UFID (generations by the model's zoo sampler, ``scan.num_steps`` steps, embedded by the scan's encoder) and
  DisDet: {method: {auroc, tpr (at ``scan.input_fpr`` of these clean inputs), seconds (both sets)}}."""
  s, n = config.scan, int(config.defend.input_samples)
  k_clean, k_poison, k_score = jax.random.split(key, 3)
  clean = jax.random.normal(k_clean, (n,) + shape)
  poisoned = backdoor.start(k_poison, (n,) + shape)
  fn = defence.jitted_sample_fn(model, d["schedule"], d["num_timesteps"], spec.sampler, int(s.num_steps))
  settings = {"terd": dict(trigger=terd_trigger),
              "ufid": dict(generate=lambda p, x, k: fn(p, x, jnp.zeros(shape), k), encode=encode.fn,
                           copies=s.ufid_copies, scale=s.ufid_scale),
              "disdet": dict(bins=s.disdet_bins)}
  out = {}
  for method in input_lib.METHODS:
    p = (params, encode.params) if method == "ufid" else params
    start = time.time()
    score = input_lib.input_detector(method, **settings[method])  # one compilation for both sets
    scores = [input_lib.score_batches(score, p, x, k_score) for x in (clean, poisoned)]
    out[method] = {"auroc": input_lib.auroc(*scores), "tpr": input_lib.tpr_at_fpr(*scores, s.input_fpr),
                   "fpr": float(s.input_fpr), "seconds": round(time.time() - start, 1), "n": n}
  return out


SHOWN = 8  # triggered samples per row of removal.png


def removal_rows(config, workdir, name, spec, model, params, meta, judge, shape, trigger, tau, encode, gamma=0.0):
  """Removal records of one backdoored model: Diff-Cleanse and Diff-Pruning (loss_p) at ``scan.remove_ratio`` and
  at each of ``defend.ratios``; Diff-Cleanse with loss_c at ``scan.remove_ratio`` (``defend.ablations``) and with
  the unlearn fine-tune on BBTI's trigger (``defend.unlearn``); Elijah's fine-tune with its τ
  (``defend.elijah_removal``, nothing pruned); loss_p's fine-tune with nothing pruned (``defend.finetune_only``:
  what the pruning adds). Each row has the real trigger's ASR at ``zoo.mse_threshold`` and at
  ``defend.loose_mse_threshold`` (``asr_loose_*``), the share of triggered samples in one cluster (``collapse_*``,
  MSCR in the scan's encoder space) and their FID against the same model's clean samples (``triggered_fid_*``), and
  the ``outcome`` (``defence.repair_outcome``); the first triggered samples of each go to
  WORKDIR/models/<name>/removal_samples.npz (removal.png). The Taylor scores and unlearn read BBTI's r in the form of the
  sampling that inverted it (``gamma`` > 0: TrojDiff's, r = μ of γε + μ; ``pruning.triggered_input``); Elijah's
  τ is an ε + τ shift either way (its paper's form)."""
  s, z = config.scan, config.zoo
  d = meta.get("diffusion") or config.diffusion.to_dict()
  key = jax.random.key(config.seed + 303)
  backdoor = backdoor_of(config, spec)
  images = defence.clean_images(config, model, params, d, shape, jax.random.fold_in(key, 0))
  scores = defence.taylor_scores(config, model, params, d, images, trigger, jax.random.fold_in(key, 1), gamma)
  k_eval = jax.random.fold_in(key, 2)

  def measure(p):  # the real trigger's ASR (two MSE thresholds), collapse and FID against clean samples
    triggered = generate(config, model, p, k_eval, z.num_samples, spec.sampler, backdoor)
    clean = generate(config, model, p, jax.random.fold_in(k_eval, 1), config.defend.fid_samples, spec.sampler)
    clean_features = judge.features(clean)
    return ({"asr": judge.asr(backdoor, triggered),
             "asr_loose": judge.asr(backdoor, triggered, config.defend.loose_mse_threshold),
             "target_mse": judge.target_mse(backdoor, triggered), "fid": judge.fid(clean),
             "collapse": defence.collapse_share(s, encode, triggered),
             "triggered_fid": fid(judge.features(triggered), clean_features)},
            np.asarray(triggered[:SHOWN]))

  before, shown = measure(params)
  pictures = {"before": shown}
  runs = []
  for r in dict.fromkeys((s.remove_ratio, *config.defend.ratios)):
    runs += [("diff_cleanse", r, "loss_p"), ("diff_pruning", r, "loss_p")]
  if config.defend.ablations:
    runs.append(("diff_cleanse", s.remove_ratio, "loss_c"))
  if config.defend.unlearn:
    runs.append(("diff_cleanse", s.remove_ratio, "unlearn"))
  if config.defend.elijah_removal:
    runs.append(("elijah", 0.0, "elijah"))
  if config.defend.finetune_only:
    runs.append(("finetune", 0.0, "loss_p"))
  rows = []
  base_fp = {"model": meta.get("fingerprint"), "trigger": hashlib.sha256(trigger.tobytes()).hexdigest(),
             "tau": hashlib.sha256(tau.tobytes()).hexdigest(),
             "removal": {k: s[k] for k in REMOVAL_KEYS}}
  for method, ratio, loss in runs:
    run_dir = os.path.join(workdir, "models", name, f"{method}_{ratio:g}_{loss}")
    fp = canonical({**base_fp, "method": method, "ratio": ratio, "loss": loss})
    repaired, fraction, worst = defence.repair(config, model, params, d, images, scores, method=method, ratio=ratio,
                                               loss=loss, workdir=run_dir, fingerprint=fp,
                                               desc=f"{name} {method} {ratio:g} {loss}", tau=tau, trigger=trigger,
                                               gamma=gamma)
    after, pictures[f"{method}_{ratio:g}_{loss}"] = measure(repaired)
    outcome, words = defence.repair_outcome(after["collapse"], s.kappa_d, after["asr"])
    rows.append({"model": name, "method": method, "loss": loss, "ratio": ratio, "pruned_fraction": fraction,
                 "trojan_gamma": float(gamma) if method in pruning.METHODS else 0.0, "max_layer_fraction": worst,
                 **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
                 "outcome": outcome, "outcome_text": words, "fid_samples": int(config.defend.fid_samples),
                 "mse_threshold": float(z.mse_threshold), "loose_mse_threshold": float(config.defend.loose_mse_threshold)})
  buf = io.BytesIO()
  np.savez(buf, **pictures)
  atomic_write(os.path.join(workdir, "models", name, "removal_samples.npz"), buf.getvalue())
  return rows


def run_defend_zoo(config, workdir):
  validate(config)
  t0 = time.time()
  names = list(config.defend.models) or [n for n, _ in specs(config)]
  unknown = [n for n in names if n not in config.zoo.models]
  if unknown:
    raise ConfigError(f"config.defend.models names {unknown}, not entries of config.zoo.models "
                      f"({sorted(config.zoo.models)})")
  entries = [(n, s) for n, s in specs(config) if n in names]
  shape = (config.data.image_size, config.data.image_size, config.model.in_channels)
  judge = Judge(config, config.defend.zoo_workdir, need_out=any(s.attack == "trojdiff_out_d2d" for _, s in entries),
                train_out=False)
  encode = defence.encoder(config.scan, shape)
  detection, removal, sheet = [], [], []
  for name, spec in progress(entries, desc="defend_zoo: models", unit="model"):
    model, variables, meta = _load(config, name)
    params = variables["params"]
    if config.defend.remove:
      defence.prune_streams(config.scan, model)  # before this model's inversion, not after
    cache = os.path.join(workdir, "models", name, "defend.json")
    detect_keys = DETECT_KEYS + (("race_iterations",) if config.scan.trigger_init == "race" else ())
    fp = canonical({"model": meta.get("fingerprint"), "detect": {k: config.scan[k] for k in detect_keys},
                    "bbti_modes": bbti_modes(config, spec),
                    "removal": {k: config.scan[k] for k in REMOVAL_KEYS},
                    "defend": config.defend.to_dict() | {"models": None}, "seed": config.seed,
                    "encoder": encode.name, "unlearn_target": pruning.UNLEARN_TARGET}
                   # rows of TrojDiff-sampled triggers repaired in BadDiffusion's form (before stop 41) are not reused
                   | ({"trojan_removal": pruning.TROJAN_UNLEARN} if any(g for _, _, g in bbti_modes(config, spec))
                      else {}))
    rec = None
    if os.path.exists(cache):
      with open(cache) as f:
        old = json.load(f)
      if old.get("fingerprint") == fp:
        rec = old
    if rec is None:
      det, trigger, tau = detect(config, name, spec, model, params, meta, judge, shape, encode)
      repair = config.defend.remove and (not config.defend.remove_models or name in config.defend.remove_models)
      gamma = det["bbti"][det["bbti_sampler"]]["trojan_gamma"]  # the form of the trigger the repair reads
      rows = (removal_rows(config, workdir, name, spec, model, params, meta, judge, shape, trigger, tau, encode, gamma)
              if det["backdoored_truth"] and repair else [])
      rec = {"fingerprint": fp, "detection": det, "removal": rows, "trigger": trigger.tolist(), "tau": tau.tolist()}
      write_json(cache, rec)
    detection.append(rec["detection"])
    removal += rec["removal"]
    backdoor = backdoor_of(config, spec)
    if backdoor is not None:
      real, inv, tau = (np.asarray(x, np.float32) for x in (backdoor.trigger, rec["trigger"], rec["tau"]))
      sheet.append([real, inv, tau])
      cos = np.asarray(cosine_matrix(np.stack([real.ravel(), inv.ravel(), tau.ravel()])))
      rec["detection"]["trigger_cosine"] = {"bbti": float(cos[0, 1]), "elijah": float(cos[0, 2])}
  for rec, verdict in zip(detection, defence.elijah_forest(detection, config.seed)):
    rec["elijah_backdoored"] = verdict
  report = {"detection": detection, "removal": removal, "encoder": encode.name, "seconds": round(time.time() - t0, 1)}
  shown = [os.path.join(workdir, "models", n, "removal_samples.npz") for n in dict.fromkeys(m["model"] for m in removal)]
  if shown and all(os.path.exists(f) for f in shown):
    rows = [row for f in shown for row in np.load(f).values()]
    n = min(len(row) for row in rows)
    save_grid(None, os.path.join(workdir, "removal.png"), rows=[row[:n] for row in rows], scale=max(1, 64 // shape[0]))
    report["removal_png"] = "removal.png"
  if sheet:
    cols = [np.clip((np.stack(c) + 1) / 2, 0, 1) for c in zip(*sheet)]
    save_grid(None, os.path.join(workdir, "triggers.png"), rows=cols, scale=max(1, 64 // shape[0]))
  write_json(os.path.join(workdir, "report.json"), report)
  md = report_markdown(config, report)
  atomic_write(os.path.join(workdir, "report.md"), md)
  print(md, flush=True)
  return report


def _acc(pairs):
  pairs = [(p, t) for p, t in pairs if p is not None]
  return (sum(p == t for p, t in pairs) / len(pairs)) if pairs else float("nan")


def report_markdown(config, r):
  s = config.scan
  det, rem = r["detection"], r["removal"]
  pct = lambda v: "–" if v is None else f"{v:.0%}"
  cosines = lambda d: ("–" if "trigger_cosine" not in d
                       else f"{d['trigger_cosine']['bbti']:.2f} / {d['trigger_cosine']['elijah']:.2f}")
  held_out = lambda d: d["bbti"][d["bbti_sampler"]].get("confirm_mscr")
  rows1 = [[d["model"], d["attack"], "yes" if d["bbti_backdoored"] else "no",
            f"{d['mscr']:.2f} / " + ("–" if held_out(d) is None else f"{held_out(d):.2f}"), d["bbti_sampler"],
            pct(d.get("inverted_asr")), {True: "yes", False: "no", None: "–"}[d.get("elijah_backdoored")],
            f"{d['elijah']['uniformity']:.3f} / {d['elijah']['total_variation']:.3f}", cosines(d)] for d in det]
  acc_b = _acc([(d["bbti_backdoored"], d["backdoored_truth"]) for d in det])
  acc_e = _acc([(d.get("elijah_backdoored"), d["backdoored_truth"]) for d in det])
  acc_t = _acc([(d["terd"]["backdoored"] if "terd" in d else None, d["backdoored_truth"]) for d in det])
  md = ["# Defences on the zoo\n",
        "Detection (Table 1): BBTI with " + ("each model's own sampler (TrojDiff models: TrojDiff's backdoor "
                                             "sampling from γε + r at the model's γ)"
                                             if config.defend.bbti_samplers == "model"
                                             else ", ".join(m for m, _, _ in defence.bbti_modes(s)))
        + f" ({s.num_steps} steps, batch {s.batch}, ≤ {s.iterations} iterations, encoder {r['encoder']}; backdoored when MSCR (κ {s.kappa}"
        + (f"; {config.defend.class_kappa:g} for In-/Out-D2D" if config.defend.bbti_samplers == "model" else "")
        + f") ≥ {s.kappa_d}"
        + (f" on the optimised batch and on {s.confirm_batch} samples from fresh noise with r (held-out; – when no hit "
           "was checked)" if s.confirm_batch else "")
        + defence.restarts_text(s) + "); inverted ASR: the backdoor samples "
        "with r judged against the model's real target; cos: the inverted trigger's cosine to the real one (model "
        "space). Elijah: random forest on (uniformity, total variation), "
        "leave-one-out over these models.\n",
        markdown_table(["model", "attack", "BBTI: backdoored", "MSCR / held-out", "sampler", "inverted ASR", "Elijah: backdoored",
                        "uniformity / TV", "cos(r, real) / cos(τ, real)"], rows1),
        f"\nDetection ACC: BBTI {acc_b:.2f}, Elijah {acc_e:.2f}"
        + (f", TERD {acc_t:.2f}" if any("terd" in d for d in det) else "") + f" ({len(det)} models).\n"]
  if any("terd" in d for d in det):
    secs = lambda d, k: f"{d.get('seconds', {}).get(k, float('nan')):.0f}"
    rows_t = [[d["model"], d["attack"], "yes" if d["terd"]["backdoored"] else "no", f"{d['terd']['kl_mean']:.4f}",
               f"{d['terd']['kl_var']:.2e}",
               "–" if "trigger_cosine" not in d["terd"] else f"{d['terd']['trigger_cosine']:.2f}",
               f"{secs(d, 'bbti')} / {secs(d, 'elijah')} / {secs(d, 'terd')}"] for d in det if "terd" in d]
    md += [f"\nTERD (model level): trigger reversed by {s.terd_iterations} + {s.terd_refine_iterations} iterations "
           f"(batch {s.terd_batch}, SGD {s.terd_lr:g}, λ {s.terd_weight_decay:g}, refinement by {s.terd_steps}-step "
           f"{s.terd_sampler}, form {s.terd_form}); backdoored when the mean per-dimension KL of N(r̂, I) from N(0, I) "
           f"> {s.terd_kl_threshold:g}; cos: r̂ against the real trigger; wall seconds of each detector.\n",
           markdown_table(["model", "attack", "TERD: backdoored", "KL mean", "KL variance", "cos(r̂, real)",
                           "seconds BBTI / Elijah / TERD"], rows_t)]
  inp = [d for d in det if "input_detection" in d]
  if inp:
    methods = list(inp[0]["input_detection"])
    rows_i = [[d["model"], d["attack"]] + [f"{d['input_detection'][m]['auroc']:.3f} / {d['input_detection'][m]['tpr']:.0%}"
                                           f" ({d['input_detection'][m]['seconds']:.0f} s)" for m in methods] for d in inp]
    mean = lambda m, k: np.mean([d["input_detection"][m][k] for d in inp])
    rows_i.append(["mean", ""] + [f"{mean(m, 'auroc'):.3f} / {mean(m, 'tpr'):.0%}" for m in methods])
    md += [f"\nInput-level detection: {inp[0]['input_detection'][methods[0]]['n']} trigger inputs of each backdoored "
           "model (its own x_T: ε + r, or TrojDiff's γε + μ) against as many clean N(0, I) inputs; AUROC / TPR at "
           f"{s.input_fpr:.0%} FPR (wall seconds for both sets). TERD: log N(x; r̂, I) − log N(x; 0, I) with the model's "
           f"reversed r̂; UFID: mean pairwise cosine ({r['encoder']}) of the generations from x_T and "
           f"{s.ufid_copies - 1} copies x_T + {s.ufid_scale:g}·ε ({s.num_steps} steps of the model's sampler); DisDet: "
           f"KL of x_T's {s.disdet_bins}-bin value histogram from N(0, 1).\n",
           markdown_table(["model", "attack"] + [f"{m.upper()} AUROC / TPR" for m in methods], rows_i)]
  t3 = [[d["model"], f"{d['mscr']:.2f}", pct(d.get("inverted_asr")), f"{d['bbti_similarity_only']['mscr']:.2f}",
         pct(d["bbti_similarity_only"]["asr"])] for d in det if "bbti_similarity_only" in d]
  if t3:
    md += ["\nTable 3 analogue — ℓ_s + ℓ_e vs ℓ_s alone (MSCR, inverted ASR):\n",
           markdown_table(["model", "MSCR (ℓ_s + ℓ_e)", "ASR (ℓ_s + ℓ_e)", "MSCR (ℓ_s)", "ASR (ℓ_s)"], t3)]
  if rem:
    mse = lambda m: ("–" if m.get("target_mse_after") is None
                     else f"{m['target_mse_before']:.1e} → {m['target_mse_after']:.1e}")
    form = lambda m: f" (r as TrojDiff's μ, γ {m['trojan_gamma']:g})" if m.get("trojan_gamma") else ""
    arrow = lambda m, k, f: f"{m[k + '_before']:{f}} → {m[k + '_after']:{f}}"
    rows2 = [[m["model"], m["method"], m["loss"] + form(m), f"{m['ratio']:.0%}", f"{m['pruned_fraction']:.1%} "
              f"(≤ {m['max_layer_fraction']:.1%}/layer)", arrow(m, "asr", ".0%"), arrow(m, "asr_loose", ".0%"), mse(m),
              arrow(m, "collapse", ".0%"), arrow(m, "triggered_fid", ".1f"), arrow(m, "fid", ".2f"), m["outcome"]]
             for m in rem]
    md += [f"\nRemoval (Tables 2 and 4): prune ⌊ratio·C⌋ channels of each layer, fine-tune {s.finetune_steps} steps "
           f"(lr {s.finetune_lr:g}, batch {s.finetune_batch}{f', EMA {s.finetune_ema:g}' if s.finetune_ema else ''}) on "
           f"{s.finetune_samples} {s.finetune_data} images; ASR "
           f"with the real trigger ({config.zoo.num_samples} samples; MSE < {config.zoo.mse_threshold:g} to an image "
           f"target, and < {config.defend.loose_mse_threshold:g}), their median MSE to it (just above the threshold: "
           "the target still comes out, blurred); collapse: the share of the triggered samples in one cluster "
           f"(MSCR, κ {s.kappa}, encoder {r['encoder']}) and their FID against the same model's clean samples; "
           f"FID of {config.defend.fid_samples} clean samples. Outcome: *target* — the target still comes out (ASR ≥ "
           f"{defence.ASR_REMOVED:.0%}); *collapsed* — the ASR calls it removed, but ≥ κ_d = {s.kappa_d} of the "
           "triggered samples are still one image: the trigger still takes over generation; *removed* — triggered "
           "samples diverse again. A trigger BBTI inverted through TrojDiff's sampling is "
           "read as its μ by the Taylor scores and unlearn (x_t = √ᾱ_t x + √(1−ᾱ_t)(γε + r)).\n",
           markdown_table(["model", "method", "loss", "ratio", "pruned", "ASR",
                           f"ASR (MSE < {config.defend.loose_mse_threshold:g})", "median MSE to target", "collapse",
                           "triggered FID", "FID", "outcome"], rows2)]
    if r.get("removal_png"):
      md.append("\nremoval.png: per backdoored model, rows of samples from the real trigger: before, then after each "
                "repair in the table's order.\n")
  md.append("\ntriggers.png: rows real trigger (TrojDiff: δ), BBTI's r, Elijah's τ (model space shown as pixels); "
            "one column per backdoored model.\n")
  md.append(f"\nWall time {r['seconds']:g} s.\n")
  return "\n".join(md)
