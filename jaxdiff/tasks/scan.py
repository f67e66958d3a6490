"""Task ``scan``: is a downloaded diffusion model backdoored? (Diff-Cleanse's BBTI with Elijah's scores.)

Loads ``config.scan.model`` (a jaxdiff export or a diffusers folder; safetensors only), inverts a trigger
with BBTI for each sampler of ``scan.samplers`` (DDPM finds BadDiffusion-type backdoors, DDIM the
VillanDiffusion/TrojDiff ones), and calls the model backdoored when the MSCR of the samples from ε + r reaches
κ_d for any of them. Elijah's inverted trigger τ and its scores are reported beside (no verdict: Elijah's
detector is a classifier trained on other models). Writes WORKDIR/scan.json (pinned: backdoored, mscr,
elijah, trigger_png), scan.md and the evidence sheet evidence.png (per sampler: the inverted trigger, samples
from clean noise, samples from ε + r; then Elijah's τ and its samples).
"""
from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import diffusion
from jaxdiff.backdoor import inversion
from jaxdiff.convert import load_model
from jaxdiff.errors import ConfigError
from jaxdiff.io import atomic_write, write_json
from jaxdiff.models import eps_fn_of, penultimate_features
from jaxdiff.progress import progress
from jaxdiff.report import markdown_table, save_grid
from jaxdiff.tasks.config import validate


def encoder(config, shape):
  """(encode_fn(x pixel [N, H, W, C]) -> [N, D], description) of ``scan.encoder``: "pixels" — each image minus its
  mean (cosine similarity = the images' Pearson correlation); "classifier" — the penultimate features of a
  classifier export made for images of ``shape``."""
  s = config.scan
  if s.encoder == "pixels":
    flat = lambda x: x.reshape(x.shape[0], -1)
    return (lambda x: flat(x) - jnp.mean(flat(x), axis=1, keepdims=True)), "pixels (mean-centred; Pearson correlation)"
  module, variables, meta = load_model(s.encoder_path, kind="classifier", what="config.scan.encoder_path")
  m = meta["model"]
  if (m.get("image_size"), m.get("in_channels")) != (shape[0], shape[2]):
    raise ConfigError(f"config.scan.encoder_path = {s.encoder_path!r} classifies {m.get('image_size')}×"
                      f"{m.get('image_size')}×{m.get('in_channels')} images, but the model generates "
                      f"{shape[0]}×{shape[1]}×{shape[2]}: pass a classifier of the model's data")
  return (lambda x: penultimate_features(module, variables, x)), f"penultimate features of {s.encoder_path}"


@functools.lru_cache(maxsize=8)
def _sample_fn(model, schedule_name, num_timesteps, sampler, steps):
  """``(params, x_T, key) -> samples`` (pixel [0, 1]), remat per step so BBTI can differentiate the chain."""
  schedule = diffusion.make_schedule(schedule_name, num_timesteps)

  def fn(params, x_init, key):
    x = diffusion.sample(eps_fn_of(model, params), schedule, key=key, sampler=sampler, num_steps=steps,
                         x_init=x_init, remat=True)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)
  return fn


def run_scan(config, workdir):
  validate(config)
  s = config.scan
  if s.remove:
    raise ConfigError("config.scan.remove = True: removal (Diff-Cleanse stage 2, channel pruning) is not "
                      "implemented yet; run the scan without it")
  t0 = time.time()
  model, variables, meta = load_model(s.model, kind="unet", what="config.scan.model")
  params = variables["params"]
  d = meta.get("diffusion") or config.diffusion.to_dict()
  shape = (meta["model"]["image_size"], meta["model"]["image_size"], meta["model"]["in_channels"])
  encode, encoder_name = encoder(config, shape)
  key = jax.random.key(config.seed)
  result = {"model": s.model, "encoder": encoder_name, "samplers": {}}
  sheet_rows, best = [], None
  for i, sampler in enumerate(s.samplers):
    sample_fn = _sample_fn(model, d["schedule"], d["num_timesteps"], sampler, int(s.num_steps))
    bar = progress(total=s.iterations, desc=f"BBTI ({sampler})", unit="it")
    out = inversion.bbti_invert(params, shape, jax.random.fold_in(key, i), sample_fn=sample_fn, encode_fn=encode,
                                iterations=s.iterations, batch=s.batch, lr=s.lr, kappa=s.kappa, kappa_d=s.kappa_d,
                                kappa_plus=s.kappa_plus, kappa_minus=s.kappa_minus, use_entropy=s.use_entropy,
                                callback=lambda h: bar.update(1))
    bar.close()
    clean = np.asarray(jax.jit(sample_fn)(params, jax.random.normal(jax.random.fold_in(key, 100 + i),
                                                                   (s.evidence_samples,) + shape), key))
    r_px = np.clip((np.asarray(out["trigger"]) + 1) / 2, 0, 1)
    trig = np.asarray(out["samples"])[:s.evidence_samples]
    result["samplers"][sampler] = {"backdoored": out["backdoored"], "mscr": out["mscr"],
                                   "iterations": len(out["history"]), "history": out["history"]}
    sheet_rows += [np.concatenate([r_px[None], clean[:s.evidence_samples - 1]]),
                   np.concatenate([r_px[None], trig[:s.evidence_samples - 1]])]
    if best is None or out["mscr"] > best[1]["mscr"]:
      best = (sampler, out)
  if s.elijah:
    eps = lambda p, x, t: eps_fn_of(model, p)(x, t)
    tau, losses = inversion.elijah_invert(params, shape, jax.random.fold_in(key, 200), eps_fn=eps,
                                          t_last=d["num_timesteps"] - 1, iterations=s.elijah_iterations,
                                          batch=s.batch, lam=s.elijah_lambda)
    sample_fn = _sample_fn(model, d["schedule"], d["num_timesteps"], s.samplers[0], int(s.num_steps))
    x_init = jax.random.normal(jax.random.fold_in(key, 201), (s.batch,) + shape) + tau
    samples = np.asarray(jax.jit(sample_fn)(params, x_init, key))
    result["elijah"] = {**inversion.elijah_scores(samples), "loss": float(losses[-1]), "sampler": s.samplers[0]}
    sheet_rows.append(np.concatenate([np.clip((np.asarray(tau) + 1) / 2, 0, 1)[None], samples[:s.evidence_samples - 1]]))
  sampler, out = best
  result.update(backdoored=any(v["backdoored"] for v in result["samplers"].values()), mscr=out["mscr"],
                mscr_sampler=sampler, trigger_png="trigger.png", evidence_png="evidence.png",
                seconds=round(time.time() - t0, 1))
  scale = max(1, 64 // shape[0])
  save_grid(np.clip((np.asarray(out["trigger"])[None] + 1) / 2, 0, 1), os.path.join(workdir, "trigger.png"), scale=scale)
  n = min(len(r) for r in sheet_rows)
  save_grid(None, os.path.join(workdir, "evidence.png"), rows=[r[:n] for r in sheet_rows], scale=scale)
  write_json(os.path.join(workdir, "scan.json"), result)
  md = scan_markdown(config, result)
  atomic_write(os.path.join(workdir, "scan.md"), md)
  print(md, flush=True)
  return result


def scan_markdown(config, r):
  s = config.scan
  rows = [[k, "yes" if v["backdoored"] else "no", f"{v['mscr']:.2f}", v["iterations"]] for k, v in r["samplers"].items()]
  md = [f"# Scan of {r['model']}: {'BACKDOORED' if r['backdoored'] else 'no backdoor found'}\n",
        f"BBTI (Diff-Cleanse): trigger r optimised {s.iterations} iterations at most (batch {s.batch}, Adam {s.lr}, "
        f"{s.num_steps}-step sampling from ε + r), encoder: {r['encoder']}; backdoored when the MSCR (κ = "
        f"{s.kappa}) reaches κ_d = {s.kappa_d}.\n",
        markdown_table(["sampler", "backdoored", "MSCR", "iterations"], rows)]
  if "elijah" in r:
    e = r["elijah"]
    md.append(f"\nElijah: uniformity {e['uniformity']:.4f}, total variation {e['total_variation']:.4f} (samples from "
              f"ε + τ, {e['sampler']}); inversion loss {e['loss']:.4f}.\n")
  md.append("\nEvidence (evidence.png): per sampler a row of clean samples and a row of samples from ε + r, each "
            "led by the inverted trigger; then Elijah's τ and its samples.\n")
  md.append(f"\nWall time {r['seconds']:g} s.\n")
  return "\n".join(md)
