"""Task ``zoo``: a fixed, seeded set of clean and backdoored DDPMs for judging backdoor defences.

Each entry of ``config.zoo.models`` (name → spec) is fine-tuned from ``config.model.init_from`` with its own
seed and number of steps (0: the initial model itself) and exported to WORKDIR/models/<name>/
(params.safetensors + meta.json; pinned: meta["backdoor"] is null for clean models, else {attack, trigger,
target, poison_rate, ...}). Then each model is measured: a backdoored model's ASR with the sampler it was
built for (and with ``zoo.compare_samplers``), a clean model's ASR with every backdoored entry's trigger and
reverse process, and every model's FID. WORKDIR/zoo.{json,md} (pinned: zoo.json = list of {name, backdoor,
asr, fid, ...}). Resumable per model: fine-tunes resume from their checkpoints, finished exports and their
measurements (WORKDIR/models/<name>/eval.json) are reused while their settings are unchanged. ``zoo.only`` names
the entries to build and measure in this run (zoo.json then lists those); a clean model's row still uses every
entry's trigger, so it is the same row as in a run of the whole zoo.
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections
import numpy as np

from jaxdiff.backdoor import trojdiff as tj
from jaxdiff.convert import export_model, load_model
from jaxdiff.data import make_source
from jaxdiff.fingerprints import canonical
from jaxdiff.io import atomic_write, write_json
from jaxdiff.models import eps_apply
from jaxdiff.parallel import make_mesh
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, save_grid
from jaxdiff.tasks.common import fingerprint, init_or_load, schedule_from_config
from jaxdiff.tasks.generation import Judge, backdoor_of, generate, specs, target_bank
from jaxdiff.tasks.config import validate
from jaxdiff.train import diffusion_loss, fit

TRIGGER_KEYS = ("attack", "trigger", "trigger_size", "target", "target_class", "trojan_trigger", "psi", "sampler")
EVAL_KEYS = ("sample_steps", "compare_samplers", "num_samples", "clean_trigger_samples", "fid_samples",
             "sample_batch", "mse_threshold", "fid_features", "fid_classifier", "inception_weights",
             "class_classifier", "fid_reference_split")


def backdoor_meta(spec):
  """meta.json["backdoor"] of a spec (pinned fields attack, trigger, target, poison_rate)."""
  if spec.attack == "clean":
    return None
  trojan = spec.attack.startswith("trojdiff")
  target = spec.target if spec.attack in ("baddiffusion", "villandiffusion", "trojdiff_d2i") else (
      f"class {spec.target_class}" if spec.attack == "trojdiff_in_d2d" else "rings (out of distribution)")
  return {"attack": spec.attack, "trigger": f"{spec.trojan_trigger} (TrojDiff)" if trojan else spec.trigger,
          "trigger_size": spec.trigger_size, "target": target, "poison_rate": spec.poison_rate,
          "sampler_family": "ode" if spec.attack == "villandiffusion" else "sde",
          "psi": spec.psi if spec.attack == "villandiffusion" else None,
          "gamma": tj.TRIGGER_KINDS[spec.trojan_trigger] if trojan else None, "sampler": spec.sampler}


def _run_config(config, spec):
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = int(spec.seed)
  c.train.num_steps = int(spec.steps)
  if spec.lr:
    c.optim.lr = float(spec.lr)
  return c


def model_fingerprint(config, spec):
  """What a zoo model depends on (``steps`` included: a longer run is another model)."""
  fp = canonical(fingerprint(config, "data", "diffusion", "optim", "train.batch_size", "train.ema_decay",
                             models={"init": config.model.init_from} if config.model.init_from else None))
  fp["spec"] = canonical(spec)
  return fp


def build(config, workdir, name, spec, model, variables, model_meta):
  """(params, meta) of one zoo model: its export when made under the same settings, else fine-tuned and
  exported; None when the fine-tune stopped at ``train.stop_at``."""
  out = os.path.join(workdir, "models", name)
  fp = model_fingerprint(config, spec)
  if os.path.exists(os.path.join(out, "meta.json")):
    _, v, meta = load_model(out, kind="unet")
    if meta.get("fingerprint") == fp:
      return v["params"], meta
  extra = {"diffusion": config.diffusion.to_dict(), "fingerprint": fp, "steps": int(spec.steps),
           "backdoor": backdoor_meta(spec), "zoo_name": name}
  backdoor = backdoor_of(config, spec)
  if spec.steps == 0:
    params = variables["params"]
  else:
    schedule = schedule_from_config(config.diffusion)
    loss = diffusion_loss(schedule) if backdoor is None else backdoor.loss(schedule)
    frozen = ({"targets": target_bank(config, spec)} if spec.attack in ("trojdiff_in_d2d", "trojdiff_out_d2d")
              else None)
    run_cfg = _run_config(config, spec)
    ckpt_fp = {k: v for k, v in fp.items() if k != "spec"}
    ckpt_fp["spec"] = {k: v for k, v in fp["spec"].items() if k != "steps"}  # a longer run resumes
    state, finished = fit(model, {"params": variables["params"]}, loss, make_source(config.data, "train"),
                          config=run_cfg, workdir=os.path.join(workdir, "runs", name), mesh=make_mesh(),
                          fingerprint=ckpt_fp, frozen=frozen, desc=f"zoo {name}", apply_fn=eps_apply(model))
    if not finished:  # stopped at train.stop_at: nothing is exported; a rerun continues
      return None
    params = state.ema_params if config.train.use_ema else state.params
  export_model(out, "unet", model_meta, {"params": params}, extra)
  return params, {**extra, "model": model_meta}


def evaluate(config, workdir, name, spec, model, params, meta, judge, zoo_backdoors):
  """The zoo row of one model (cached in WORKDIR/models/<name>/eval.json while its settings hold)."""
  z = config.zoo
  cache = os.path.join(workdir, "models", name, "eval.json")
  fp = {"model": meta.get("fingerprint"), "eval": canonical({k: z[k] for k in EVAL_KEYS}),
        # what a clean model's rows depend on: every zoo trigger's start, reverse process, sampler and target
        "triggers": {n: canonical({k: config.zoo.models[n][k] for k in TRIGGER_KEYS}) for n in sorted(zoo_backdoors)}
                    if spec.attack == "clean" else None,
        "out_classifier": judge.out_fingerprint if spec.attack in ("clean", "trojdiff_out_d2d") else None}
  if os.path.exists(cache):
    with open(cache) as f:
      old = json.load(f)
    if old.get("fingerprint") == canonical(fp):
      return old["row"]
  t0 = time.time()
  key = jax.random.key(config.seed + 23)
  backdoor = backdoor_of(config, spec)
  sampler = spec.sampler
  clean = generate(config, model, params, jax.random.fold_in(key, 0), z.fid_samples, sampler)
  row = {"name": name, "backdoor": meta.get("backdoor"), "sampler": sampler, "steps": int(spec.steps),
         "fid": judge.fid(clean), "fid_samples": int(z.fid_samples)}
  grid_rows = [clean[:16]]
  if backdoor is None:  # every trigger of the zoo, through its own reverse process and sampler
    per = {}
    for other, (b, s) in sorted(zoo_backdoors.items()):
      imgs = generate(config, model, params, jax.random.fold_in(key, 1), z.clean_trigger_samples, s, b)
      per[other] = judge.asr(b, imgs)
      grid_rows.append(imgs[:16])
    row.update(asr=max(per.values()) if per else 0.0, asr_by_trigger=per, num_samples=int(z.clean_trigger_samples))
  else:
    per = {}
    for s in dict.fromkeys((sampler, *z.compare_samplers)):
      imgs = generate(config, model, params, jax.random.fold_in(key, 1), z.num_samples, s, backdoor)
      per[s] = judge.asr(backdoor, imgs)
      grid_rows.append(imgs[:16])
    row.update(asr=per[sampler], asr_by_sampler=per, num_samples=int(z.num_samples))
    if backdoor.target is None:  # the class's share among clean samples: the chance level of this ASR
      row["clean_target_share"] = judge.target_share(backdoor, clean)
    else:
      grid_rows.append(np.repeat(((backdoor.target + 1) / 2)[None], min(16, len(clean)), 0))
  row["seconds"] = round(time.time() - t0, 1)
  k = min(len(r) for r in grid_rows)
  save_grid(None, os.path.join(workdir, "models", name, "samples.png"), rows=[r[:k] for r in grid_rows],
            scale=max(1, 64 // config.data.image_size))
  write_json(cache, {"fingerprint": canonical(fp), "row": row})
  return row


def report_markdown(config, rows, feature_name):
  def fmt_backdoor(b):
    if not b:
      return "clean"
    return f"{b['attack']}: {b['trigger']} → {b['target']} (p={b['poison_rate']:g})"

  table = []
  for r in rows:
    detail = r.get("asr_by_sampler") or r.get("asr_by_trigger") or {}
    extra = ", ".join(f"{k} {v:.0%}" for k, v in detail.items())
    if "clean_target_share" in r:
      extra += f"; target class among clean samples {r['clean_target_share']:.0%}"
    table.append([r["name"], fmt_backdoor(r["backdoor"]), r["steps"], r["sampler"], r["asr"], f"{r['fid']:.2f}", extra])
  z = config.zoo
  return "\n".join([
      f"# Model zoo ({config.data.name}, {len(rows)} models)\n",
      f"ASR: image targets — share of triggered samples with MSE < {z.mse_threshold:g} to the target (pixel "
      "space); class targets — share the classifier puts in the target class. A clean model's ASR is its worst "
      f"over every trigger of the zoo ({z.clean_trigger_samples} samples each, the trigger's own reverse "
      f"process and sampler); a backdoored model's with the sampler it was built for ({z.num_samples} samples; "
      f"other samplers in the last column). FID on {z.fid_samples} clean samples, {feature_name}, against the "
      f"{z.fid_reference_split} split. Sampler steps: "
      + ", ".join(f"{k} {v}" for k, v in z.sample_steps.items()) + ".\n",
      markdown_table(["name", "backdoor", "fine-tune steps", "sampler", "ASR", "FID", "ASR per sampler / trigger"],
                     table), "\nSamples: models/<name>/samples.png (rows: clean samples, triggered samples per "
      "sampler or per trigger, target).\n"])


def run_zoo(config, workdir):
  validate(config)
  t0 = time.time()
  model, variables, model_meta = init_or_load(config.model, jax.random.key(config.seed))
  every = specs(config)
  entries = [(n, s) for n, s in every if not config.zoo.only or n in config.zoo.only]
  built = {}
  for name, spec in progress(entries, desc="zoo: models", unit="model"):
    built[name] = build(config, workdir, name, spec, model, variables, model_meta)
    if built[name] is None:
      print(f"zoo: {name} stopped at train.stop_at = {config.train.stop_at}; rerun to continue", flush=True)
      return []
  t_train = time.time()
  # a clean model's row is measured with every zoo trigger, built in this run (zoo.only) or not
  zoo_backdoors = {name: (backdoor_of(config, spec), spec.sampler) for name, spec in every if spec.attack != "clean"}
  judge = Judge(config, workdir, need_out=any(s.attack == "trojdiff_out_d2d" for _, s in every))
  rows = [evaluate(config, workdir, name, spec, model, built[name][0], built[name][1], judge, zoo_backdoors)
          for name, spec in progress(entries, desc="zoo: evaluation", unit="model")]
  md = report_markdown(config, rows, judge.feature_name)
  md += f"\nWall time: models {t_train - t0:.0f} s, evaluation {time.time() - t_train:.0f} s (this run).\n"
  write_json(os.path.join(workdir, "zoo.json"), rows)
  atomic_write(os.path.join(workdir, "zoo.md"), md)
  print(md, flush=True)
  return rows
