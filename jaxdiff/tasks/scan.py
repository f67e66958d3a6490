"""Task ``scan``: is a downloaded diffusion model backdoored? (Diff-Cleanse's BBTI with Elijah's scores; with
``scan.mode = "entropy"``, DIFF2's entropy detector for a model used as a purifier, see ``entropy_scan``; with
``scan.mode = "terd"``, TERD's reversed trigger and KL verdict, see ``terd_scan``.)

Loads ``config.scan.model`` (a jaxdiff export or a diffusers folder; safetensors only), inverts a trigger
with BBTI for each sampler of ``scan.samplers`` (DDPM finds BadDiffusion-type backdoors, DDIM the
VillanDiffusion ones) from ε + r, and again with TrojDiff's backdoor sampling (from γε + r through its reverse
process) at each γ of ``scan.trojan_gammas``, and calls the model backdoored when the MSCR of the backdoor
samples reaches κ_d for any of them. Elijah's inverted trigger τ and its scores are reported beside (no verdict: Elijah's
detector is a classifier trained on other models). Writes WORKDIR/scan.json (pinned: backdoored, mscr,
elijah, trigger_png), scan.md and the evidence sheet evidence.png (per sampling: the inverted trigger, samples
from clean noise, the backdoor samples with r; then Elijah's τ and its samples).
"""
from __future__ import annotations

import hashlib
import io
import os
import time

import jax
import numpy as np

from jaxdiff.backdoor import pruning
from jaxdiff.backdoor.entropy import filter_entropies, purified_label_entropies
from jaxdiff.convert import export_model, load_model, model_digest
from jaxdiff.data import make_source
from jaxdiff.errors import ConfigError
from jaxdiff.fingerprints import canonical
from jaxdiff.functional import Apply, jit_apply
from jaxdiff.io import atomic_write, write_json
from jaxdiff.metrics import fid
from jaxdiff.report import markdown_table, save_grid
from jaxdiff.robust import PurifiedClassifier, Purifier
from jaxdiff.tasks import defence
from jaxdiff.tasks.common import fid_feature_fn, load_classifier
from jaxdiff.tasks.config import ENTROPY_HELDOUT_DIGITS, REMOVAL_KEYS, TERD_KL_THRESHOLD_DIGITS, validate


def run_scan(config, workdir):
  validate(config)
  s = config.scan
  t0 = time.time()
  model, variables, meta = load_model(s.model, kind="unet", what="config.scan.model")
  params = variables["params"]
  d = meta.get("diffusion") or config.diffusion.to_dict()
  shape = (meta["model"]["image_size"], meta["model"]["image_size"], meta["model"]["in_channels"])
  if s.mode == "entropy":
    return entropy_scan(config, workdir, model, params, d, shape, t0)
  if s.mode == "terd":
    return terd_scan(config, workdir, model, params, d, shape, t0)
  encode = defence.encoder(s, shape)
  reference = None
  if s.remove:  # the FID reference of the repair: config.data, which must be the model's data
    defence.prune_streams(s, model)  # a prune_groups the model has no streams for fails before the inversion
    reference = make_source(config.data, "train")
    if tuple(reference.shape) != shape:
      raise ConfigError(f"config.scan.remove = True measures the repair against config.data ({config.data.name}, "
                        f"{'×'.join(map(str, reference.shape))} images), but the model generates "
                        f"{'×'.join(map(str, shape))} images: set config.data to the model's data")
  key = jax.random.key(config.seed)
  result = {"model": s.model, "encoder": encode.name, "samplers": {}}
  sheet_rows, best = [], None
  for i, (name, sampler, gamma) in enumerate(defence.bbti_modes(s)):
    out = defence.bbti(s, model, params, d, shape, encode, jax.random.fold_in(key, i), sampler, gamma=gamma)
    fn = defence.jitted_sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps))
    noise = jax.random.normal(jax.random.fold_in(key, 100 + i), (s.evidence_samples,) + shape)
    clean = np.asarray(fn(params, noise, np.zeros(shape, np.float32), key))
    r_px = np.clip((np.asarray(out["trigger"]) + 1) / 2, 0, 1)
    trig = np.asarray(out["samples"])[:s.evidence_samples]
    result["samplers"][name] = {"backdoored": out["backdoored"], "mscr": out["mscr"], "sampler": sampler,
                                "trojan_gamma": gamma, "iterations": len(out["history"]),
                                "attempts": out["attempts"],
                                "init_offset": out["init_offset"], "confirm_mscr": out["confirm_mscr"],
                                "history": out["history"]}
    sheet_rows += [np.concatenate([r_px[None], clean[:s.evidence_samples - 1]]),
                   np.concatenate([r_px[None], trig[:s.evidence_samples - 1]])]
    if best is None or defence.verdict_rank(out) > defence.verdict_rank(best[1]):
      best = ((name, sampler, gamma), out)
  if s.elijah:
    tau, scores, samples = defence.elijah(s, model, params, d, shape, jax.random.fold_in(key, 200), s.samplers[0])
    result["elijah"] = scores
    sheet_rows.append(np.concatenate([np.clip((np.asarray(tau) + 1) / 2, 0, 1)[None], samples[:s.evidence_samples - 1]]))
  (name, sampler, gamma), out = best
  result.update(backdoored=any(v["backdoored"] for v in result["samplers"].values()), mscr=out["mscr"],
                mscr_sampler=name, trigger_png="trigger.png", evidence_png="evidence.png")
  if s.remove:
    result["removal"] = remove(config, workdir, model, params, meta, d, shape, encode, out["trigger"], sampler,
                               reference, jax.random.fold_in(key, 300), gamma)
  result["seconds"] = round(time.time() - t0, 1)
  scale = max(1, 64 // shape[0])
  save_grid(np.clip((np.asarray(out["trigger"])[None] + 1) / 2, 0, 1), os.path.join(workdir, "trigger.png"), scale=scale)
  n = min(len(r) for r in sheet_rows)
  save_grid(None, os.path.join(workdir, "evidence.png"), rows=[r[:n] for r in sheet_rows], scale=scale)
  write_json(os.path.join(workdir, "scan.json"), result)
  md = scan_markdown(config, result)
  atomic_write(os.path.join(workdir, "scan.md"), md)
  print(md, flush=True)
  return result


def entropy_scan(config, workdir, model, params, d, shape, t0):
  """DIFF2 §5.7 on one purifier: ``scan.entropy_trials`` × ``entropy_inputs`` test images of config.data
  diffused to t = T and reversed (DDPM, ``entropy_steps`` calls), classified by ``scan.classifier``; backdoored
  when the filtered label entropy falls below ``scan.entropy_threshold``. Writes scan.json (``backdoored``,
  ``entropy``, ``entropy_raw``, ``entropy_filtered``, ``threshold``; ``mscr``, ``elijah``, ``trigger_png``
  null), scan.md and evidence.png (reversed outputs of the first trial, one row per predicted label)."""
  s = config.scan
  test = make_source(config.data, "test")
  if tuple(test.shape) != shape:
    raise ConfigError(f"config.scan.mode = 'entropy' purifies config.data ({config.data.name}, "
                      f"{'×'.join(map(str, test.shape))} images), but the model takes {'×'.join(map(str, shape))} "
                      "images: set config.data to the model's data")
  clf, cvars = load_classifier(s.classifier, "config.scan.classifier")
  purifier = Purifier(model, t_bar=int(d["num_timesteps"]), sampler="ddpm", num_steps=int(s.entropy_steps),
                      schedule=d["schedule"], num_timesteps=int(d["num_timesteps"]))
  prm = {"denoiser": params, "classifier": cvars}
  x_ref = test.get(np.arange(min(len(test), s.entropy_trials * s.entropy_inputs)))[0]
  key = jax.random.key(config.seed)
  raw = purified_label_entropies(PurifiedClassifier(purifier, clf), prm, x_ref, key, trials=s.entropy_trials,
                                 per_trial=s.entropy_inputs, num_classes=config.data.num_classes,
                                 batch_size=s.batch)
  filtered = [float(v) for v in filter_entropies(raw, s.iqr_k, s.moving_window)]
  score = float(np.mean(filtered))
  n = min(len(x_ref), s.evidence_samples * 4)
  out = np.asarray(jit_apply(purifier, params, x_ref[:n], jax.random.fold_in(key, 0)))
  labels = np.argmax(np.asarray(jit_apply(Apply(clf), cvars, out)), -1)
  rows = [out[labels == k][:s.evidence_samples] for k in range(config.data.num_classes) if (labels == k).any()]
  width = max(len(r) for r in rows)
  rows = [np.concatenate([r, np.ones((width - len(r),) + r.shape[1:], r.dtype)]) for r in rows]
  save_grid(None, os.path.join(workdir, "evidence.png"), rows=rows, scale=max(1, 64 // shape[0]))
  held = ENTROPY_HELDOUT_DIGITS
  measured = (config.data.name == held["data"] and float(s.entropy_threshold) == held["threshold"]
              and held["tpr"] is not None)
  result = {"model": s.model, "mode": "entropy", "classifier": s.classifier, "backdoored": score < s.entropy_threshold,
            "threshold_heldout": ({k: held[k] for k in ("tpr", "fpr", "models", "report")} if measured else None),
            "entropy": score, "entropy_raw": list(raw), "entropy_filtered": filtered,
            "threshold": float(s.entropy_threshold), "max_entropy": float(np.log(config.data.num_classes)),
            "mscr": None, "elijah": None, "trigger_png": None, "evidence_png": "evidence.png",
            "seconds": round(time.time() - t0, 1)}
  write_json(os.path.join(workdir, "scan.json"), result)
  md = "\n".join([
      f"# Scan of {s.model} as a purifier: {'BACKDOORED' if result['backdoored'] else 'no backdoor found'}\n",
      f"DIFF2 §5.7 entropy detector with {s.classifier}: {s.entropy_trials} trials × {s.entropy_inputs} test images "
      f"diffused to t = T and reversed by DDPM in {s.entropy_steps} steps; label entropy per trial (nats) "
      f"{' '.join(f'{v:.3f}' for v in raw)}, filtered {' '.join(f'{v:.3f}' for v in filtered)}; mean {score:.3f} "
      f"vs threshold {s.entropy_threshold:g} (ln C = {result['max_entropy']:.3f}).\n",
      (f"This threshold judged on {held['models']} held-out {held['data']} models (other seeds, fine-tune lengths and "
       f"α; {held['report']}): TPR {held['tpr']:.0%}, FPR {held['fpr']:.0%}. "
       + ("" if held["tpr"] == 1 and held["fpr"] == 0 else
          "Label entropy does not separate every backdoored model from the benign ones: a verdict of no backdoor "
          "is weak evidence. ") + "\n"
       if measured else
       "No held-out TPR / FPR is measured for this threshold and data: judge the verdict by the calibration "
       "population only (configs/diff2_detect_digits_heldout.py shows how to measure it).\n"),
      "Evidence (evidence.png): reversed outputs of the first trial, one row per predicted label.\n",
      f"Wall time {result['seconds']:g} s.\n"])
  atomic_write(os.path.join(workdir, "scan.md"), md)
  print(md, flush=True)
  return result


def terd_scan(config, workdir, model, params, d, shape, t0):
  """TERD on one model (``defence.terd``): the trigger reversed by estimation and refinement, backdoored when the
  mean per-dimension KL of N(r̂, I) from N(0, I) exceeds ``scan.terd_kl_threshold``. Writes scan.json (``mode``
  "terd", ``backdoored``, ``terd`` {kl_mean, kl_var, threshold, losses}, ``trigger_png``, ``trigger_npy`` — r̂ for
  ``backdoor.input_detection``'s TERD filter — ``evidence_png``), scan.md and evidence.png (rows led by r̂: samples
  from clean noise ε, then from ε + r̂, both by ``scan.terd_sampler``)."""
  s = config.scan
  key = jax.random.key(config.seed)
  out = defence.terd(s, model, params, d, shape, jax.random.fold_in(key, 0))
  r = out["trigger"]
  fn = defence.jitted_sample_fn(model, d["schedule"], d["num_timesteps"], s.terd_sampler, int(s.terd_steps))
  noise = jax.random.normal(jax.random.fold_in(key, 1), (s.evidence_samples - 1,) + shape)
  clean = np.asarray(fn(params, noise, np.zeros(shape, np.float32), key))
  triggered = np.asarray(fn(params, noise, r, key))
  r_px = np.clip((r + 1) / 2, 0, 1)
  scale = max(1, 64 // shape[0])
  save_grid(r_px[None], os.path.join(workdir, "trigger.png"), scale=scale)
  save_grid(None, os.path.join(workdir, "evidence.png"), rows=[np.concatenate([r_px[None], clean]),
                                                               np.concatenate([r_px[None], triggered])], scale=scale)
  buf = io.BytesIO()
  np.save(buf, r)
  atomic_write(os.path.join(workdir, "trigger.npy"), buf.getvalue())
  result = {"model": s.model, "mode": "terd", "backdoored": out["backdoored"],
            "terd": {"kl_mean": out["kl_mean"], "kl_var": out["kl_var"], "threshold": float(s.terd_kl_threshold),
                     "form": s.terd_form, "iterations": int(s.terd_iterations),
                     "refine_iterations": int(s.terd_refine_iterations),
                     "estimation_loss": [float(v) for v in out["estimation_loss"]],
                     "refinement_loss": [float(v) for v in out["refinement_loss"]]},
            "mscr": None, "elijah": None, "trigger_png": "trigger.png", "trigger_npy": "trigger.npy",
            "evidence_png": "evidence.png", "seconds": round(time.time() - t0, 1)}
  write_json(os.path.join(workdir, "scan.json"), result)
  last = lambda v: f"{v[-1]:.3f}" if len(v) else "–"
  md = "\n".join([
      f"# Scan of {s.model} (TERD): {'BACKDOORED' if result['backdoored'] else 'no backdoor found'}\n",
      f"TERD (Mo et al. 2024): trigger estimation {s.terd_iterations} iterations (x0 ~ N(0, I), t within 10 of T), "
      f"refinement {s.terd_refine_iterations} (x0 from ε + r by {s.terd_steps}-step {s.terd_sampler}), batch "
      f"{s.terd_batch}, SGD {s.terd_lr:g}, λ {s.terd_weight_decay:g}, form {s.terd_form}; reversed loss at the end "
      f"{last(result['terd']['estimation_loss'])} / {last(result['terd']['refinement_loss'])}.\n",
      f"Per-dimension KL of N(r̂, I) from N(0, I): mean {out['kl_mean']:.4f} (threshold {s.terd_kl_threshold:g}; "
      f"{'the digits value, from 2 clean and 3 backdoored models' if s.terd_kl_threshold == TERD_KL_THRESHOLD_DIGITS else 'set by the config'}), "
      f"variance {out['kl_var']:.2e}.\n",
      "Evidence (evidence.png): rows led by the reversed trigger r̂: samples from clean noise ε, then from ε + r̂. "
      "trigger.npy holds r̂ (model space) for an input filter (jaxdiff.backdoor.input_detection, method 'terd').\n",
      f"Wall time {result['seconds']:g} s.\n"])
  atomic_write(os.path.join(workdir, "scan.md"), md)
  print(md, flush=True)
  return result


def remove(config, workdir, model, params, meta, d, shape, encode, trigger, sampler, source, key, gamma=0.0):
  """Diff-Cleanse stage 2 on the scanned model with its inverted trigger r: Taylor scores, pruning of
  ``scan.remove_ratio`` of each layer's channels, the repair fine-tune; the repaired model is exported to
  WORKDIR/repaired. Returns the pinned ``removal`` record: ``asr_before``/``asr_after`` are the inverted
  trigger's effect (the share of backdoor samples with r in one cluster, MSCR), FIDs of clean samples
  before/after against ``source`` (the model's data). The Taylor scores, the unlearn loss and the effect read r
  in the form of the sampling that inverted it (``gamma`` > 0: TrojDiff's, r = μ of γε + μ)."""
  s = config.scan
  images = defence.clean_images(config, model, params, d, shape, jax.random.fold_in(key, 0))
  scores = defence.taylor_scores(config, model, params, d, images, trigger, jax.random.fold_in(key, 1), gamma)
  fp = canonical({"model": model_digest(s.model), "trigger": hashlib.sha256(np.asarray(trigger).tobytes()).hexdigest(),
                  "removal": {k: s[k] for k in REMOVAL_KEYS}, "data": config.data.to_dict(),
                  "unlearn_target": pruning.UNLEARN_TARGET if s.remove_loss == "unlearn" else None}
                 | ({"trojan_gamma": float(gamma)} if gamma else {}))  # the form the repair read r in
  repaired, fraction, worst = defence.repair(
      config, model, params, d, images, scores, method="diff_cleanse", ratio=s.remove_ratio,
      loss=s.remove_loss, trigger=trigger, gamma=gamma, workdir=os.path.join(workdir, "removal_run"), fingerprint=fp,
      desc="repair fine-tune")
  k_eval = jax.random.fold_in(key, 2)
  share = lambda p: defence.trigger_cluster_share(s, model, p, d, shape, encode, trigger, k_eval, sampler, gamma,
                                                  return_samples=True)
  features, _ = fid_feature_fn("classifier", s.fid_classifier, "", "config.scan")
  reference = features(source.get(np.arange(len(source)))[0])
  fn = defence.jitted_sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps), float(gamma))
  rec, rows = {}, []
  for when, p in (("before", params), ("after", repaired)):
    x = defence.synthesize(model, p, d, shape, s.fid_samples, jax.random.fold_in(key, 3), s.synthetic_steps,
                           s.synthetic_sampler)
    clean_features = features(x)
    triggered = np.concatenate([np.asarray(fn(p, jax.random.normal(k, (len(i),) + shape), trigger, k))
                                for i, k in _batches(s.fid_samples, 256, jax.random.fold_in(key, 4))])
    rec[f"asr_{when}"], shown = share(p)
    rec[f"fid_{when}"] = fid(clean_features, reference)
    rec[f"triggered_fid_{when}"] = fid(features(triggered), clean_features)
    rows += [x[:s.evidence_samples], shown[:s.evidence_samples]]
  outcome, words = defence.repair_outcome(rec["asr_after"], s.kappa_d)
  n = min(len(r) for r in rows)
  save_grid(None, os.path.join(workdir, "removal.png"), rows=[r[:n] for r in rows], scale=max(1, 64 // shape[0]))
  out = os.path.join(workdir, "repaired")
  export_model(out, "unet", meta["model"], {"params": repaired},
               {"diffusion": d, "repaired_from": s.model, "fingerprint": fp, "pruned_fraction": fraction})
  return {"method": "diff_cleanse", "loss": s.remove_loss, "trojan_gamma": float(gamma), "pruned_fraction": fraction,
          "max_layer_fraction": worst, **rec, "fid_samples": int(s.fid_samples), "outcome": outcome,
          "outcome_text": words, "removal_png": "removal.png", "model_dir": "repaired"}


def _batches(n, size, key):
  """(indices, key) of ``n`` items in batches of at most ``size``, a key per batch."""
  return [(np.arange(i, min(n, i + size)), jax.random.fold_in(key, i)) for i in range(0, n, size)]


def scan_markdown(config, r):
  s = config.scan
  rows = [[k, "yes" if v["backdoored"] else "no", f"{v['mscr']:.2f}",
           "–" if v.get("confirm_mscr") is None else f"{v['confirm_mscr']:.2f}", v["iterations"], v["attempts"],
           "–" if v.get("init_offset") is None else f"{v['init_offset']:+.1f}"] for k, v in r["samplers"].items()]
  start = {"zeros": "r = 0", "normal": "r ~ N(0, 1)",
           "race": f"every constant image r = c·1 for {s.race_iterations} iterations, then the lowest objective's "
                   "(column c)"}.get(s.trigger_init, "the best constant image r = c·1 (column c)")
  md = [f"# Scan of {r['model']}: {'BACKDOORED' if r['backdoored'] else 'no backdoor found'}\n",
        f"BBTI (Diff-Cleanse): trigger r optimised {s.iterations} iterations at most from {start} "
        f"(batch {s.batch}, Adam {s.lr}, "
        f"{s.num_steps}-step sampling from ε + r"
        + (f", and TrojDiff's from γε + r, γ ∈ {{{', '.join(f'{g:g}' for g in s.trojan_gammas)}}}" if s.trojan_gammas
           else "")
        + f"), encoder: {r['encoder']}; backdoored when the MSCR (κ = {s.kappa}"
        + (f"; samples of intensity entropy < {s.min_entropy:g} bits join no cluster" if s.min_entropy else "")
        + f") reaches κ_d = {s.kappa_d}"
        + (f" on the optimised batch and on {s.confirm_batch} samples from fresh noise" if s.confirm_batch else "")
        + (defence.restarts_text(s) + " (column runs)" if s.restarts else "")
        + ".\n",
        markdown_table(["sampling", "backdoored", "MSCR", "held-out MSCR", "iterations", "runs", "c"], rows)]
  if "elijah" in r:
    e = r["elijah"]
    md.append(f"\nElijah: uniformity {e['uniformity']:.4f}, total variation {e['total_variation']:.4f} (samples from "
              f"ε + τ, {e['sampler']}); inversion loss {e['loss']:.4f}.\n")
  if "removal" in r:
    m = r["removal"]
    md.append(f"\nRemoval (Diff-Cleanse, {m['loss']}): pruned {m['pruned_fraction']:.1%} of the channels (at most "
              f"{m['max_layer_fraction']:.1%} of a layer), fine-tuned {s.finetune_steps} steps"
              f"{f' (EMA {s.finetune_ema:g})' if s.finetune_ema else ''} on "
              f"{s.finetune_samples} {s.finetune_data} images. Backdoor samples with r ("
              + (f"TrojDiff's sampling, γ {m['trojan_gamma']:g}" if m.get("trojan_gamma") else "from ε + r")
              + ") in one cluster: "
              f"{m['asr_before']:.0%} → {m['asr_after']:.0%}; FID of clean samples {m['fid_before']:.2f} → "
              f"{m['fid_after']:.2f}; FID of {m['fid_samples']} backdoor samples with r against clean samples of the "
              f"same model {m['triggered_fid_before']:.2f} → {m['triggered_fid_after']:.2f}. "
              f"**{m['outcome'].capitalize()}**: {m['outcome_text']}. Repaired model: repaired/; removal.png: rows "
              "clean samples and backdoor samples with r, before then after.\n")
  md.append("\nEvidence (evidence.png): per sampling a row of clean samples and a row of backdoor samples with r, each "
            "led by the inverted trigger; then Elijah's τ and its samples.\n")
  md.append(f"\nWall time {r['seconds']:g} s.\n")
  return "\n".join(md)
