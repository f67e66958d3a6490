"""Task ``baddiffusion``: plant the BadDiffusion backdoor in a clean DDPM (``config.model.init_from``), then
measure it: triggered noise ε + g → target (MSE, SSIM, MSE-threshold ASR) and clean samples' quality (FID),
for the clean and the backdoored model, per sampler, without and with the clipping defence.

Resumable: the fine-tune (WORKDIR/finetune/checkpoints) and its export WORKDIR/backdoored/ carry the
fingerprint of the attack's settings. Writes WORKDIR/report.{json,md} (pinned: "rows" of {model, sampler,
clip, mse, ssim, asr, fid, num_samples}), patterns.png (every trigger and target at the dataset's size),
sample grids, and the sweep plots (Figure 2: MSE and FID against the poison rate; Figure 5: clipping).
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import baddiffusion as bd
from jaxdiff.backdoor.triggers import TARGETS, TRIGGERS, generative_target, generative_trigger, stamp, trigger_region
from jaxdiff.convert import export_model
from jaxdiff.data import make_source
from jaxdiff.fingerprints import canonical, check_or_record
from jaxdiff.metrics import fid, mse_attack_success_rate, mse_per_sample, ssim_per_sample
from jaxdiff.models import eps_apply, eps_fn_of
from jaxdiff.parallel import make_mesh
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, plot_bars, plot_panels, save_grid, write_report
from jaxdiff.tasks import defence
from jaxdiff.tasks.common import fid_feature_fn, fingerprint, init_or_load, reuse_export, schedule_from_config
from jaxdiff.tasks.config import validate
from jaxdiff.train import fit

# baddiffusion keys that only change the evaluation, not the backdoored model
EVAL_ONLY = ("samplers", "sample_steps", "clip", "num_samples", "fid_samples", "sample_batch", "mse_threshold",
             "fid_features", "fid_classifier", "inception_weights", "fid_reference_split", "sweep_poison_rate",
             "sweep_triggers", "sweep_targets", "inpainting", "inpainting_samples", "anp_lrs", "anp_eps", "anp_steps",
             "anp_alpha", "anp_iterations", "anp_batch", "anp_threshold")
MODELS = ("clean", "backdoored")


def patterns(config):
  """(trigger g, target y) of the config at the dataset's size, model space [H, W, C]."""
  b, size, ch = config.baddiffusion, config.data.image_size, config.model.in_channels
  return (generative_trigger(b.trigger, b.trigger_size, size, ch),
          generative_target(b.target, size, ch, b.trigger, b.trigger_size))


def save_pattern_sheet(config, path):
  """Every trigger (at the configured size) and every target, at the dataset's size: the report's sheet."""
  b, size, ch = config.baddiffusion, config.data.image_size, config.model.in_channels
  imgs = [generative_trigger(t, b.trigger_size, size, ch) for t in TRIGGERS]
  imgs += [generative_target(t, size, ch, b.trigger, b.trigger_size) for t in TARGETS]
  save_grid((np.stack(imgs) + 1) / 2, path, ncol=len(imgs), scale=max(1, 64 // size))


def finetune_fingerprint(config):
  """What the backdoored model depends on: the clean model's weights, the data, the attack (without its
  evaluation-only keys), the optimiser and the batch (``train.num_steps`` may grow on resume)."""
  fp = canonical(fingerprint(config, "seed", "data", "baddiffusion", "optim", "train.batch_size",
                             models={"clean": config.model.init_from}))
  fp["baddiffusion"] = {k: v for k, v in fp["baddiffusion"].items() if k not in EVAL_ONLY}
  return fp


def backdoor(config, workdir, model, model_meta, clean_params, trigger, target):
  """The backdoored params: fine-tuned with the BadDiffusion loss through the shared runner, exported to
  WORKDIR/backdoored/ (params.safetensors + meta.json, loadable like the shipped models)."""
  b = config.baddiffusion
  export_dir = os.path.join(workdir, "backdoored")
  fp = finetune_fingerprint(config)
  params = reuse_export(export_dir, fp, config.overwrite)
  if params is not None:
    return params
  loss = bd.baddiffusion_loss(schedule_from_config(config.diffusion), trigger, target, b.poison_rate)

  def export(state):
    final = state.ema_params if config.train.use_ema else state.params
    export_model(export_dir, "unet", model_meta, {"params": final},
                 {"diffusion": config.diffusion.to_dict(), "fingerprint": fp, "steps": int(state.step),
                  "backdoor": {"attack": "baddiffusion", "trigger": b.trigger, "trigger_size": b.trigger_size,
                               "target": b.target, "poison_rate": b.poison_rate, "sampler_family": "sde"}})

  state, _ = fit(model, {"params": clean_params}, loss, make_source(config.data, "train"), config=config,
                 workdir=os.path.join(workdir, "finetune"), mesh=make_mesh(), fingerprint=fp, export=export,
                 desc="baddiffusion fine-tune", apply_fn=eps_apply(model))
  return state.ema_params if config.train.use_ema else state.params


@functools.lru_cache(maxsize=16)
def _sampler(model, schedule_name, num_timesteps, sampler, steps, clip):
  """Jitted ``(params, x_T, key) -> images`` (pixel [0, 1]) of one U-Net architecture; weights are arguments."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  @jax.jit
  def run(params, x_init, key):
    x = diffusion.sample(eps_fn_of(model, params), schedule, key=key, sampler=sampler, num_steps=steps or None,
                         x_init=x_init, clip_x0=clip)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return run


def generate(config, model, params, key, n, *, sampler, clip, trigger=None):
  """n samples (pixel space) from x_T ~ N(0, I), or from x_T = ε + g with ``trigger``; in batches."""
  b, d = config.baddiffusion, config.diffusion
  shape = (config.data.image_size, config.data.image_size, config.model.in_channels)
  run = _sampler(model, d.schedule, d.num_timesteps, sampler, b.sample_steps, clip)
  out = []
  for i in range(0, n, b.sample_batch):
    k = jax.random.fold_in(key, i)
    m = min(b.sample_batch, n - i)
    x_init = jax.random.normal(jax.random.fold_in(k, 1), (m,) + shape) + (0.0 if trigger is None else trigger)
    out.append(np.asarray(run(params, x_init, k)))
  return np.concatenate(out)


@functools.lru_cache(maxsize=8)
def _inpainter(model, schedule_name, num_timesteps, sampler, steps, noise_std):
  """Jitted ``(params, x_known, mask, x_init, key) -> images`` (pixel [0, 1]); weights are arguments."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  @jax.jit
  def run(params, x_known, mask, x_init, key):
    x = diffusion.inpaint(eps_fn_of(model, params), schedule, x_known, mask, key=key, sampler=sampler,
                          num_steps=steps or None, noise_std=noise_std, x_init=x_init)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return run


def evaluate_inpainting(config, workdir, model, params, trigger, target, models=MODELS):
  """BadDiffusion App. C: test images corrupted (blur / line / box) and inpainted by each model, from clean
  noise (MSE/SSIM to the uncorrupted image) and, with the trigger pasted on the image and x_T = ε + g, from
  triggered noise (MSE/SSIM/ASR to the target)."""
  b, d = config.baddiffusion, config.diffusion
  src = make_source(config.data, "test")
  x_px, _ = src.get(np.arange(min(b.inpainting_samples, len(src))))
  x = 2.0 * jnp.asarray(x_px) - 1.0
  region = trigger_region(trigger)
  target_px = (np.asarray(target) + 1) / 2
  key = jax.random.key(config.seed + 29)
  rows = []
  for kind, name in itertools.product(b.inpainting, models):
    k = jax.random.fold_in(key, diffusion.CORRUPTIONS.index(kind))
    out = {}
    for triggered in (False, True):
      img = stamp(x, trigger, region) if triggered else x
      xc, mask, noise_std = diffusion.corrupt(img, kind, jax.random.fold_in(k, 1))
      run = _inpainter(model, d.schedule, d.num_timesteps, b.samplers[0], b.sample_steps, float(noise_std))
      x_init = jax.random.normal(jax.random.fold_in(k, 2), x.shape) + (trigger if triggered else 0.0)
      out[triggered] = np.asarray(run(params[name], xc, mask, x_init, jax.random.fold_in(k, 3)))
    mse_t = mse_per_sample(out[True], target_px)
    rows.append({"model": name, "corruption": kind, "sampler": b.samplers[0],
                 "mse_clean": float(mse_per_sample(out[False], x_px).mean()),
                 "ssim_clean": float(ssim_per_sample(out[False], x_px).mean()),
                 "mse_target": float(mse_t.mean()), "ssim_target": float(ssim_per_sample(out[True], target_px).mean()),
                 "asr": mse_attack_success_rate(mse_t, b.mse_threshold), "num_images": len(x_px)})
    n = min(16, len(x_px))
    save_grid(None, os.path.join(workdir, "inpainting", f"{name}_{kind}.png"),
              rows=[x_px[:n], out[False][:n], out[True][:n]], scale=max(1, 64 // target.shape[0]))
  return rows


def fid_reference(config):
  """(features fn, reference features, report meta) of the FID the rows use."""
  b = config.baddiffusion
  features, feature_name = fid_feature_fn(b.fid_features, b.fid_classifier, b.inception_weights, "config.baddiffusion")
  ref_images, _ = (src := make_source(config.data, b.fid_reference_split)).get(np.arange(len(src)))
  meta = {"fid_features": feature_name,
          "fid_reference": f"{config.data.name} {b.fid_reference_split} split, {len(ref_images)} images"}
  return features, features(ref_images), meta


def measure(config, model, params, trigger, target_px, features, ref, *, sampler, clip):
  """(metrics {mse, ssim, asr, fid}, clean samples, triggered samples) of one model with one sampler; the same
  noise (seed + 17) for every call, so rows of pruned or repaired params compare sample for sample."""
  b = config.baddiffusion
  key = jax.random.key(config.seed + 17)
  clean = generate(config, model, params, jax.random.fold_in(key, 0), b.fid_samples, sampler=sampler, clip=clip)
  trig = generate(config, model, params, jax.random.fold_in(key, 1), b.num_samples, sampler=sampler, clip=clip,
                  trigger=trigger)
  mse = mse_per_sample(trig, target_px)
  metrics = {"mse": float(mse.mean()), "ssim": float(ssim_per_sample(trig, target_px).mean()),
             "asr": mse_attack_success_rate(mse, b.mse_threshold), "fid": fid(features(clean), ref)}
  return metrics, clean, trig


def evaluate(config, workdir, model, params, trigger, target, models, features, ref):
  """Report rows for every (model, sampler, clip) and the sample grids."""
  b = config.baddiffusion
  target_px = (np.asarray(target) + 1) / 2
  rows = []
  settings = list(itertools.product(models, b.samplers, b.clip))
  for name, sampler, clip in progress(settings, desc="baddiffusion evaluation", unit="row"):
    metrics, clean, trig = measure(config, model, params[name], trigger, target_px, features, ref, sampler=sampler,
                                   clip=clip)
    rows.append({"model": name, "sampler": sampler, "clip": bool(clip), **metrics,
                 "num_samples": int(b.num_samples), "fid_samples": int(b.fid_samples)})
    k = min(16, b.num_samples, b.fid_samples)
    save_grid(None, os.path.join(workdir, "samples", f"{name}_{sampler}{'_clip' if clip else ''}.png"),
              rows=[clean[:k], trig[:k], np.repeat(target_px[None], k, 0)], scale=max(1, 64 // target.shape[0]))
  return rows


def evaluate_anp(config, workdir, model, params, trigger, target, features, ref):
  """BadDiffusion App. B (and DIFF2 App. C.1 on a generative backdoor): Adversarial Neuron Pruning of the
  backdoored model for each rate of ``baddiffusion.anp_lrs`` (masks fitted on clean training images), then the
  target's reconstruction from triggered noise (MSE, SSIM, ASR; a removed backdoor raises the MSE) and FID of
  clean samples, with the first sampler and no clipping. Rows {model, setting "anp_lr=…", pruned_fraction, mse,
  ssim, asr, fid}; anp.png plots them against the rate."""
  b = config.baddiffusion
  sampler = b.samplers[0]
  target_px = (np.asarray(target) + 1) / 2
  rows = []
  for lr, pruned_params, fraction in defence.anp_sweep(b, model, params, schedule_from_config(config.diffusion),
                                                      config.data, config.seed + 31, jax.random.key(config.seed + 37),
                                                      "backdoored"):
    metrics, clean, trig = measure(config, model, pruned_params, trigger, target_px, features, ref, sampler=sampler,
                                   clip=False)  # the evaluation's noise: rows compare with its unpruned row
    rows.append({"model": "backdoored", "setting": f"anp_lr={lr:g}", "sampler": sampler, "pruned_fraction": fraction,
                 **metrics})
    k = min(16, b.num_samples, b.fid_samples)
    save_grid(None, os.path.join(workdir, "anp", f"lr{lr:g}.png"), rows=[clean[:k], trig[:k]],
              scale=max(1, 64 // target.shape[0]))
  lrs = [float(r["setting"].split("=")[1]) for r in rows]
  plot_panels(lrs, {"MSE to target (trigger)": {"backdoored": [r["mse"] for r in rows]},
                    "ASR": {"backdoored": [r["asr"] for r in rows]},
                    "FID (clean)": {"backdoored": [r["fid"] for r in rows]}}, os.path.join(workdir, "anp.png"),
              "ANP learning rate", ylim=None, xscale="log" if min(lrs) > 0 else "symlog")
  return rows


def sweep_point_config(config, poison_rate, trigger, target):
  """One grid point: the main config with another poison rate / trigger / target, backdoored rows only (no ANP)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.baddiffusion.update(poison_rate=float(poison_rate), trigger=trigger, target=target, sweep_poison_rate=(),
                        sweep_triggers=(), sweep_targets=(), anp_lrs=())
  return c


def run_sweep(config, workdir, report):
  """Sub-runs over poison rates × triggers × targets (each list defaults to the main value), each resumable
  in WORKDIR/sweep/<trigger>-<target>-p<rate>/ and reused while its settings are unchanged."""
  b = config.baddiffusion
  points = itertools.product(b.sweep_poison_rate or (b.poison_rate,), b.sweep_triggers or (b.trigger,),
                             b.sweep_targets or (b.target,))
  out = []
  for rate, trig, tgt in points:
    if (rate, trig, tgt) == (b.poison_rate, b.trigger, b.target):
      rows = [r for r in report["rows"] if r["model"] == "backdoored"]
    else:
      sub = os.path.join(workdir, "sweep", f"{trig}-{tgt}-p{rate:g}")
      point = sweep_point_config(config, rate, trig, tgt)
      done = os.path.exists(os.path.join(sub, "report.json"))
      if check_or_record(os.path.join(sub, "point.fingerprint.json"), point.to_dict(), what="the sweep point",
                         overwrite=True) and done:
        rows = json.load(open(os.path.join(sub, "report.json")))["rows"]
      else:
        rows = run_baddiffusion(point, sub, models=("backdoored",))["rows"]
    out += [{"poison_rate": rate, "trigger": trig, "target": tgt, **r} for r in rows]
  return out


def plot_sweeps(config, report, workdir):
  """Figure 2 (MSE curve and FID bars against the poison rate) and Figure 5 (with/without clipping)."""
  b = config.baddiffusion
  first = b.samplers[0]
  if len(b.sweep_poison_rate) > 1:
    rates = sorted(set(b.sweep_poison_rate))
    pick = lambda clip, key: [next(r[key] for r in report["sweep"] if r["poison_rate"] == p and r["trigger"] == b.trigger
                                   and r["target"] == b.target and r["sampler"] == first and r["clip"] == clip)
                              for p in rates]
    plot_panels(rates, {"MSE to target": {"no clipping": pick(False, "mse")},
                        "ASR": {"no clipping": pick(False, "asr")}}, os.path.join(workdir, "figure2_mse.png"),
                "poison rate", ylim=None)
    plot_bars([f"{p:g}" for p in rates], {"FID": pick(False, "fid")}, os.path.join(workdir, "figure2_fid.png"),
              xlabel="poison rate", ylabel="FID (clean samples)")
  if len(b.clip) > 1:
    rows = [r for r in report["rows"] if r["sampler"] == first]
    series = {f"{m}, {'clip' if c else 'no clip'}": [next(r[k] for r in rows if r["model"] == m and r["clip"] == c)
                                                    for k in ("mse", "asr", "ssim")]
              for m in MODELS if any(r["model"] == m for r in rows) for c in (False, True)}
    plot_bars(["MSE", "ASR", "SSIM"], series, os.path.join(workdir, "figure5_clipping.png"), ylabel="value")


def report_markdown(config, report):
  b = config.baddiffusion
  rows = [[r["model"], r["sampler"], "yes" if r["clip"] else "no", f"{r['mse']:.2e}", f"{r['ssim']:.3f}", r["asr"],
           f"{r['fid']:.2f}", r["num_samples"]] for r in report["rows"]]
  md = [f"# BadDiffusion (trigger {b.trigger} {b.trigger_size}, target {b.target}, poison rate {b.poison_rate})\n",
        f"Triggered noise x_T = ε + g; ASR = fraction of triggered samples with MSE < {b.mse_threshold:g} to the "
        f"target (pixel space). FID: {report['fid_features']}, against {report['fid_reference']}, "
        f"{b.fid_samples} clean samples per row. Clipping = the inference-time defence: x̂0 clipped to [−1, 1] "
        "at every step (diffusers' clip_sample, what the public BadDiffusion code toggles).\n",
        markdown_table(["model", "sampler", "clip", "MSE", "SSIM", "ASR", "FID", "samples"], rows),
        "\nPatterns: patterns.png (triggers, then targets). Sample grids: samples/<model>_<sampler>[_clip].png "
        "(rows: clean samples, triggered samples, target).\n"]
  if "inpainting" in report:
    rows = [[r["model"], r["corruption"], f"{r['mse_clean']:.2e}", f"{r['ssim_clean']:.3f}", f"{r['mse_target']:.2e}",
             f"{r['ssim_target']:.3f}", r["asr"]] for r in report["inpainting"]]
    md += ["\n## Inpainting (App. C): inpainting/<model>_<corruption>.png (rows: image, inpainted, inpainted with "
           "the trigger)\n", f"{report['inpainting'][0]['num_images']} test images, corrupted (blur: Gaussian noise "
           "std 0.3, known pixels re-imposed above their noise level; line / box: erased pixels) and inpainted "
           f"with {report['inpainting'][0]['sampler']}; without the trigger against the image, with the trigger "
           "(pasted on the image, x_T = ε + g) against the target.\n",
           markdown_table(["model", "corruption", "MSE to image", "SSIM to image", "MSE to target (trigger)",
                           "SSIM to target (trigger)", "ASR (trigger)"], rows)]
  if "anp" in report:
    rows = [[r["setting"], f"{r['pruned_fraction']:.1%}", f"{r['mse']:.2e}", f"{r['ssim']:.3f}", r["asr"],
             f"{r['fid']:.2f}"] for r in report["anp"]]
    md += ["\n## ANP (App. B): the backdoored model pruned by Adversarial Neuron Pruning, per mask learning rate "
           f"(ε_ANP {b.anp_eps:g}, {b.anp_iterations} batches of {b.anp_batch}, threshold {b.anp_threshold:g}); "
           "anp.png, anp/lr<rate>.png (rows: clean, triggered samples)\n",
           markdown_table(["setting", "pruned", "MSE to target", "SSIM", "ASR", "FID"], rows)]
  if "sweep" in report:
    rows = [[r["trigger"], r["target"], r["poison_rate"], r["sampler"], "yes" if r["clip"] else "no",
             f"{r['mse']:.2e}", r["asr"], f"{r['fid']:.2f}"] for r in report["sweep"]]
    md += ["\n## Sweep (backdoored models): figure2_mse.png, figure2_fid.png\n",
           markdown_table(["trigger", "target", "poison rate", "sampler", "clip", "MSE", "ASR", "FID"], rows)]
  if "seconds" in report:
    md.append("\nWall time per stage (s): " + ", ".join(f"{k} {v:g}" for k, v in report["seconds"].items()) + "\n")
  return "\n".join(md)


def run_baddiffusion(config, workdir, models=MODELS):
  validate(config)
  b = config.baddiffusion
  clock = {"start": time.time()}
  trigger, target = patterns(config)
  save_pattern_sheet(config, os.path.join(workdir, "patterns.png"))
  model, variables, model_meta = init_or_load(config.model, jax.random.key(config.seed))
  params = {"clean": variables["params"]}
  params["backdoored"] = backdoor(config, workdir, model, model_meta, variables["params"], trigger, target)
  clock["finetune"] = time.time()
  features, ref, meta = fid_reference(config)
  rows = evaluate(config, workdir, model, params, trigger, target, models, features, ref)
  report = {"rows": rows, **meta, "mse_threshold": b.mse_threshold, "trigger": b.trigger, "target": b.target,
            "trigger_size": b.trigger_size, "poison_rate": b.poison_rate,
            "fingerprint": {**finetune_fingerprint(config), "evaluation": canonical(config.baddiffusion)}}
  if b.inpainting:
    report["inpainting"] = evaluate_inpainting(config, workdir, model, params, trigger, target, models)
  clock["evaluate"] = time.time()
  if b.anp_lrs and "backdoored" in models:
    base = next(r for r in rows if r["model"] == "backdoored" and r["sampler"] == b.samplers[0] and not r["clip"])
    report["anp"] = [{"model": "backdoored", "setting": "none", "pruned_fraction": 0.0,
                      **{k: base[k] for k in ("sampler", "mse", "ssim", "asr", "fid")}}]
    report["anp"] += evaluate_anp(config, workdir, model, params["backdoored"], trigger, target, features, ref)
    clock["anp"] = time.time()
  if b.sweep_poison_rate or b.sweep_triggers or b.sweep_targets:
    write_report(workdir, report, report_markdown(config, report))  # a kill during the sweep loses nothing
    report["sweep"] = run_sweep(config, workdir, report)
  plot_sweeps(config, report, workdir)
  clock["sweeps"] = time.time()
  names = list(clock)
  report["seconds"] = {b_: round(clock[b_] - clock[a], 1) for a, b_ in zip(names, names[1:])}
  write_report(workdir, report, report_markdown(config, report))
  print(report_markdown(config, report), flush=True)
  return report
