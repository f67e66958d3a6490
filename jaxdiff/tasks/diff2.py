"""Task ``diff2``: trigger → backdoor fine-tuning → evaluation of benign φ vs backdoored φ* (DIFF2 §3–5).

Stages are resumable: WORKDIR/trigger.npy, WORKDIR/finetune/{checkpoints,export}, then the evaluation
writes WORKDIR/report.{json,md} (pinned format: attack, purification[sampler][benign|backdoored], and
certification) and WORKDIR/figure3.png.
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
from jaxdiff.attacks.diff2 import SCHEMES, InputSpecificTrigger, diff2_loss, optimize_trigger
from jaxdiff.data import host_batches, make_source, prefetch
from jaxdiff.data.triggers import corner_mask, make_trigger
from jaxdiff.io import MetricWriter, atomic_write, write_json
from jaxdiff.parallel import check_divisible, make_mesh
from jaxdiff.report import markdown_table, plot_panels, save_grid, write_report
from jaxdiff.robust import denoised_classifier, purify_pixels
from jaxdiff.robust.analysis import certified_accuracy
from jaxdiff.tasks.certify import certify_dataset
from jaxdiff.tasks.common import (eps_fn_of, export_model, fingerprint, load_model, sampler_steps,
                                  schedule_from_config)
from jaxdiff.tasks.purification import (accuracy, attack_batches, autoattack_fn, eval_subset, load_classifier_fn,
                                        predictions)
from jaxdiff.train import (Checkpointer, IncompatibleCheckpointError, create_state, make_optimizer, make_train_step,
                           train_loop)


def _classifier(path):
  classify, meta = load_classifier_fn(path)
  return jax.jit(classify), meta


def build_trigger(config, workdir, surrogates, src, mesh):
  d = config.diff2
  size, ch = config.data.image_size, config.model.in_channels
  key = jax.random.key(config.seed + 7)
  path = os.path.join(workdir, "trigger.npy")
  r = None
  if d.trigger == "input_specific":  # §5.5: a PGD-optimised r per input, no universal r to store
    return InputSpecificTrigger(tuple(surrogates), d.alpha, d.input_specific_steps, d.targeted, d.target_class)
  if d.trigger == "adversarial":
    if os.path.exists(path):
      r = np.load(path)
    else:
      mask = corner_mask(size, d.patch_size) if d.patch_size else None
      batches = ((s_b[1]["image"], s_b[1]["label"]) for s_b in
                 prefetch(host_batches(src, d.trigger_batch, seed=config.seed + 1), mesh))
      writer = MetricWriter(workdir)
      r = np.asarray(optimize_trigger(surrogates, batches, key=key, shape=(size, size, ch), alpha=d.alpha,
                                      steps=d.trigger_steps, lr=d.trigger_lr, mask=mask, targeted=d.targeted,
                                      target_class=d.target_class, mesh=mesh,
                                      log=lambda i, m: writer.write(i, m, prefix="")))
      buf = io.BytesIO()
      np.save(buf, r)
      atomic_write(path, buf.getvalue())
      save_grid(r[None], os.path.join(workdir, "trigger.png"), scale=8)
  kind = "blend" if d.trigger == "adversarial" else d.trigger
  return make_trigger(kind, size, ch, key=key, alpha=d.alpha, patch_size=d.patch_size or None, r=r,
                      pattern=d.get("pattern", "checkerboard"))


EVAL_ONLY = ("sweep_t_bar", "sweep_alpha", "sweep_trigger_size", "transfer_classifiers", "stop_after")


def finetune_fingerprint(config):
  """What φ* depends on: the diff2 block without its evaluation-only keys, the optimiser and the batch
  (``train.num_steps`` may grow on resume). Stored with the checkpoints and the export."""
  fp = json.loads(json.dumps(fingerprint(config, "diff2", "optim.name", "train.batch_size")))
  fp["diff2"] = {k: v for k, v in fp["diff2"].items() if k not in EVAL_ONLY}
  return fp


def finetune(config, workdir, trigger, surrogates, src, mesh, schedule):
  """Backdoor fine-tuning of the benign denoiser (Alg. 1 l.4–8) through the shared train step."""
  d = config.diff2
  out = os.path.join(workdir, "finetune")
  fp = finetune_fingerprint(config)
  if os.path.exists(os.path.join(out, "export", "meta.json")):
    model, variables, meta = load_model(os.path.join(out, "export"))
    if meta.get("finetune_fingerprint", fp) != fp:
      diff = sorted(k for k in fp["diff2"] if meta["finetune_fingerprint"]["diff2"].get(k) != fp["diff2"][k])
      raise IncompatibleCheckpointError(
          f"{out}/export was fine-tuned with another configuration (differs in: {', '.join(diff) or 'optim/batch'}). "
          "Use a fresh --workdir, or restore the original config.")
    return model, variables
  check_divisible(config.train.batch_size, mesh)
  model, variables, meta = load_model(config.purify.denoiser)
  reverse_target = None
  if (d.trigger not in ("adversarial", "input_specific") and d.scheme == "diff2"
      and d.get("reverse_target", "adversarial") == "adversarial"):
    f = surrogates[0]  # Alg. 2: the reverse process should output an adversarial x̃_r
    reverse_target = lambda xr, k: attacks.pgd(f, xr, jnp.argmax(f(xr), -1), key=k, eps=d.reverse_eps,
                                               steps=d.reverse_steps, targeted=d.targeted,
                                               target=jnp.full(xr.shape[:1], d.target_class))
  loss = diff2_loss(schedule, trigger.apply, lam=d.lam, t_trunc=d.t_trunc, entangled=d.entangled,
                    reverse_target=reverse_target, poison_rate=d.poison_rate or None, scheme=d.scheme,
                    noise_trigger=getattr(trigger, "pattern", None), gamma=d.trojdiff_gamma)
  opt = make_optimizer(config.optim, config.train.num_steps)
  state = create_state(variables["params"], opt, config.seed)
  step = make_train_step(model.apply, loss, opt, mesh=mesh, ema_decay=config.train.ema_decay)
  ckpt = Checkpointer(os.path.join(out, "checkpoints"),
                      fingerprint=fp,
                      max_to_keep=2, save_every=config.train.checkpoint_every)
  state = train_loop(state, step, src, mesh=mesh, workdir=out, num_steps=config.train.num_steps,
                     global_batch=config.train.batch_size, seed=config.seed, checkpointer=ckpt,
                     log_every=config.train.log_every, stop_at=config.train.get("stop_at") or None,
                     desc="diff2 fine-tune")
  ckpt.close()
  params = state.ema_params if config.train.get("use_ema", False) else state.params
  if int(state.step) == config.train.num_steps:
    export_model(os.path.join(out, "export"), "unet", meta["model"], {"params": params},
                 {"diffusion": meta.get("diffusion"), "diff2": config.diff2.to_dict(), "finetune_fingerprint": fp})
  return model, {"params": params}


def attack_success(pred, y, d):
  """ASR: misclassified (untargeted) or classified as y* (targeted, over inputs with y ≠ y*)."""
  if d.targeted:
    keep = y != d.target_class
    return float(np.mean(pred[keep] == d.target_class)) if keep.any() else 0.0
  return float(np.mean(pred != y))


def robust_accuracy(config, logits_fn, pgd_fn, x, y, key, desc):
  """Table 2: robust ACC of the stochastic ``logits_fn(x, key)`` (f∘φ, pixel space) on the first
  ``eval.robust_examples`` inputs under PGD (``pgd_fn(x, y, key)``) and, with ``attack.autoattack``,
  AutoAttack. ``robust_acc`` is the per-input worst case over the attacks run; each attack's own figure is
  ``robust_acc_{pgd,autoattack}``. Empty when no attack is configured."""
  a, e = config.attack, config.eval
  n = min(len(x), e.robust_examples)
  x, y = x[:n], y[:n]
  run = {}
  if a.pgd_steps:
    run["pgd"] = pgd_fn
  if a.get("autoattack"):
    run["autoattack"] = autoattack_fn(logits_fn, a)
  out, survived = {}, np.ones(n, bool)
  for i, (name, fn) in enumerate(run.items()):
    adv = attack_batches(fn, x, y, e.batch_size, jax.random.fold_in(key, 2 * i), f"{name} {desc}")
    correct = predictions(logits_fn, adv, e.batch_size, jax.random.fold_in(key, 2 * i + 1)) == y
    out[f"robust_acc_{name}"] = float(correct.mean())
    survived &= correct
  if run:
    out["robust_acc"] = float(survived.mean())
  return out


def evaluate(config, workdir, trigger, classify, denoisers, schedule, x, y):
  """Tables 1, 2, 7 and the Figure-3 grid. Denoiser params are arguments of the jitted functions, so
  the benign and backdoored models (same architecture) share one compilation per sampler."""
  d, p, e = config.diff2, config.purify, config.eval
  key = jax.random.key(config.seed + 11)
  xr = np.asarray(jax.jit(trigger.apply)(jnp.asarray(x)))
  report = {"attack": "targeted" if d.targeted else "untargeted", "purification": {},
            "no_purifier": {"clean_acc": accuracy(classify, x, y, e.batch_size),
                            "asr": attack_success(predictions(classify, xr, e.batch_size), y, d)}}
  model = denoisers["benign"][0]
  n_grid = min(8, len(x))
  grid_rows = [x[:n_grid], xr[:n_grid]]

  def pur(params, z, k, sampler, t_bar=p.t_bar, steps=None):
    return purify_pixels(eps_fn_of(model, params), schedule, z, k, t_bar=t_bar, sampler=sampler,
                         num_steps=steps or sampler_steps(p, sampler), gradient=p.gradient)

  for sampler in p.samplers:
    report["purification"][sampler] = {}
    logits = jax.jit(lambda prm, z, k, steps, s=sampler: classify(pur(prm, z, k, s, steps=steps)),
                     static_argnums=3)
    pgd = jax.jit(lambda prm, xb, yb, k, s=sampler: attacks.pgd(
        lambda z, kk: classify(pur(prm, z, kk, s)), xb, yb, key=k, eps=config.attack.eps, norm=config.attack.norm,
        steps=config.attack.pgd_steps, eot=config.attack.eot, stochastic=True))
    for name, (_, variables) in denoisers.items():
      prm = variables["params"]
      lf = lambda z, k, prm=prm: logits(prm, z, k, None)
      res = {"clean_acc": accuracy(lf, x, y, e.batch_size, key),
             "asr": attack_success(predictions(lf, xr, e.batch_size, jax.random.fold_in(key, 1)), y, d)}
      res.update(robust_accuracy(config, lf, lambda xb, yb, k, prm=prm: pgd(prm, xb, yb, k), x, y,
                                 jax.random.fold_in(key, 2), f"f∘φ[{sampler}] {name}"))
      if p.get("one_step") and sampler == p.samplers[0]:  # Table 7: one-shot x̂0 from t̄ (any sampler)
        one = lambda z, k: logits(prm, z, k, 1)
        report.setdefault("one_step", {})[name] = {
            "clean_acc": accuracy(one, x, y, e.batch_size, key),
            "asr": attack_success(predictions(one, xr, e.batch_size, key), y, d)}
      report["purification"][sampler][name] = res
      if sampler == p.samplers[0]:
        if name == "benign":
          xt = schedule.q_sample(2 * jnp.asarray(xr[:n_grid]) - 1, jnp.full((n_grid,), p.t_bar - 1.0),
                                 jax.random.normal(key, xr[:n_grid].shape))
          grid_rows.append(np.asarray(jnp.clip((xt + 1) / 2, 0, 1)))
        grid_rows.append(np.asarray(jax.jit(pur, static_argnums=3)(prm, jnp.asarray(xr[:n_grid]), key, sampler)))
  if d.get("sweep_t_bar"):  # Figure 4: ASR against t̄
    sweep = {"t_bar": list(d.sweep_t_bar)}
    for tb in d.sweep_t_bar:
      lf_tb = jax.jit(lambda prm, z, k, tb=tb: classify(pur(prm, z, k, p.samplers[0], t_bar=tb)))
      for name, (_, variables) in denoisers.items():
        f = lambda z, k, prm=variables["params"]: lf_tb(prm, z, k)
        sweep.setdefault(name, {}).setdefault("asr", []).append(
            attack_success(predictions(f, xr, e.batch_size, key), y, d))
    report["sweep_t_bar"] = sweep
  save_grid(None, os.path.join(workdir, "figure3.png"), rows=grid_rows, scale=e.get("grid_scale", 4))
  return report, xr


def certification(config, workdir, classify, denoisers, schedule, x, y, xr, idx):
  """Table 6: certified ACC of clean and trigger inputs through f∘φ and f∘φ* (denoised smoothing).
  One resumable TSV per (model, inputs) in WORKDIR/certify/, written by the certify task's loop."""
  c = config.certify
  sigma = c.sigmas[0]
  n_img = min(len(x), c.num_images)
  out = {"sigma": sigma, "radii": list(c.radii), "n": c.n}
  key = jax.random.key(config.seed + 13)
  for name, (model, variables) in denoisers.items():
    base = denoised_classifier(eps_fn_of(model, variables["params"]), schedule, classify, sigma,
                               num_steps=c.denoise_steps)
    out[name] = {}
    for kind, inputs in (("clean", x), ("trigger", xr)):
      tsv = os.path.join(workdir, "certify", f"{name}_{kind}_sigma{sigma:g}.tsv")
      certify_dataset(base, inputs[:n_img], y[:n_img], idx[:n_img], tsv, key=key, sigma=sigma,
                      num_classes=c.num_classes, n0=c.n0, n=c.n, alpha=c.alpha, batch_size=c.batch_size,
                      images_per_call=1, desc=f"certify {name}/{kind}")
      out[name][kind] = certified_accuracy(tsv, c.radii)
  return out


TRIGGERS = ("adversarial", "input_specific", "patch", "blend", "warp")


def check_diff2_config(d):
  """Fails early, with what to change, on trigger/scheme combinations the pipeline cannot run."""
  if d.trigger not in TRIGGERS:
    raise ValueError(f"config.diff2.trigger={d.trigger!r}; use one of {TRIGGERS}")
  if d.scheme not in SCHEMES:
    raise ValueError(f"config.diff2.scheme={d.scheme!r}; use one of {SCHEMES}")
  if d.scheme != "diff2" and d.trigger not in ("adversarial", "blend"):
    raise ValueError(f"scheme {d.scheme!r} (Eq. 14) adds a pattern r to the noise: use trigger='adversarial' "
                     f"or 'blend', not {d.trigger!r}")
  if d.get("stop_after", "") not in ("", "trigger", "finetune"):
    raise ValueError(f"config.diff2.stop_after={d.stop_after!r}; use '', 'trigger' or 'finetune'")
  if d.get("sweep_alpha") and (d.trigger in ("patch", "warp") or not all(0 < a <= 1 for a in d.sweep_alpha)):
    raise ValueError(f"config.diff2.sweep_alpha={tuple(d.sweep_alpha)}: values in (0, 1], for the blending "
                     f"triggers (adversarial, input_specific, blend), not {d.trigger!r}")
  if d.get("sweep_trigger_size") and (d.trigger not in ("adversarial", "patch", "blend")
                                      or not all(int(k) >= 1 for k in d.sweep_trigger_size)):
    raise ValueError(f"config.diff2.sweep_trigger_size={tuple(d.sweep_trigger_size)}: patch sizes ≥ 1, for "
                     f"trigger adversarial, patch or blend, not {d.trigger!r}")
  if d.scheme != "diff2" and d.poison_rate:
    raise ValueError("poisoning (diff2.poison_rate > 0) only applies to scheme='diff2'")


SWEEPS = {"alpha": "figure5", "trigger_size": "figure6"}  # diff2.sweep_<name> → WORKDIR/<figure>.png


def sweep_point_config(config, name, value):
  """The config of one Figure-5/6 point: ``diff2.alpha`` = value, or a value×value trigger patch (full size
  when value ≥ image size); evaluated with the first sampler only, no certification, no nested sweeps."""
  c = ml_collections.ConfigDict(config.to_dict())
  if name == "alpha":
    c.diff2.alpha = float(value)
  elif name == "trigger_size":
    c.diff2.patch_size = 0 if int(value) >= config.data.image_size else int(value)
  else:
    raise ValueError(f"unknown sweep {name!r}; use one of {tuple(SWEEPS)}")
  c.diff2.update(sweep_alpha=(), sweep_trigger_size=(), sweep_t_bar=(), transfer_classifiers=(), stop_after="")
  c.purify.update(samplers=(config.purify.samplers[0],), one_step=False)
  c.certify.n = 0
  return c


def run_sweep(config, workdir, name, report):
  """{name: [values], "benign"|"backdoored": {metric: [per value]}} for the first sampler. Each point runs
  in WORKDIR/sweep_<name>/<name>=<value>/ (resumable like any run) and is not re-run while its report.json
  and config.json match the point's config; the point equal to the main config reuses the main evaluation."""
  values = list(config.diff2.get(f"sweep_{name}"))
  s0 = config.purify.samplers[0]
  current = config.diff2.alpha if name == "alpha" else (config.diff2.patch_size or config.data.image_size)
  out = {name: values, "benign": {}, "backdoored": {}}
  for v in values:
    if v == current:
      res = report["purification"][s0]
    else:
      sub_wd = os.path.join(workdir, f"sweep_{name}", f"{name}={v:g}")
      point = sweep_point_config(config, name, v)
      want = json.loads(point.to_json())
      cfg_path, path = os.path.join(sub_wd, "config.json"), os.path.join(sub_wd, "report.json")
      done = os.path.exists(path) and os.path.exists(cfg_path) and json.load(open(cfg_path)) == want
      if done:
        sub = json.load(open(path))
      else:
        write_json(cfg_path, want)
        sub = run_diff2(point, sub_wd)
      res = sub["purification"][s0]
    for m in ("benign", "backdoored"):
      for k, val in res[m].items():
        out[m].setdefault(k, []).append(val)
  return out


def _plot_sweep(sweep, name, out_png, xlabel):
  panels = {{"asr": "ASR", "clean_acc": "clean ACC", "robust_acc": "robust ACC"}[k]:
            {"φ": sweep["benign"][k], "φ*": sweep["backdoored"][k]}
            for k in ("asr", "clean_acc", "robust_acc") if k in sweep["benign"]}
  plot_panels(sweep[name], panels, out_png, xlabel)


def run_diff2(config, workdir):
  check_diff2_config(config.diff2)
  mesh = make_mesh()
  classify, _ = _classifier(config.classifier.path)
  surrogates = [_classifier(pth)[0] for pth in config.diff2.surrogates]
  src = make_source(config.data, "train")
  schedule = schedule_from_config(config.purify.diffusion)
  clock = {"start": time.time()}
  lap = lambda name: clock.__setitem__(name, time.time())
  stop_after = config.diff2.get("stop_after", "")
  trigger = build_trigger(config, workdir, surrogates, src, mesh)
  lap("trigger")
  if stop_after == "trigger":
    return None
  backdoored = finetune(config, workdir, trigger, surrogates, src, mesh, schedule)
  lap("finetune")
  if stop_after == "finetune":  # e.g. build φ* on an accelerator, evaluate it elsewhere later
    return None
  benign = load_model(config.purify.denoiser)[:2]
  x, y, idx = eval_subset(config)
  denoisers = {"benign": benign, "backdoored": backdoored}
  report, xr = evaluate(config, workdir, trigger, classify, denoisers, schedule, x, y)
  lap("evaluate")
  if config.certify.n:
    report["certification"] = certification(config, workdir, classify, denoisers, schedule, x, y, xr, idx)
  lap("certification")
  transfer = {}
  model = benign[0]
  for pth in config.diff2.get("transfer_classifiers", ()):
    f2, _ = _classifier(pth)
    transfer[pth] = {}
    s0 = config.purify.samplers[0]
    lf_p = jax.jit(lambda prm, z, k: f2(purify_pixels(eps_fn_of(model, prm), schedule, z, k, t_bar=config.purify.t_bar,
                                                       sampler=s0, num_steps=sampler_steps(config.purify, s0))))
    for name, (_, variables) in denoisers.items():
      lf = lambda z, k, prm=variables["params"]: lf_p(prm, z, k)
      transfer[pth][name] = {"clean_acc": accuracy(lf, x, y, config.eval.batch_size, jax.random.key(1)),
                             "asr": attack_success(predictions(lf, xr, config.eval.batch_size, jax.random.key(2)), y,
                                                   config.diff2)}
  if transfer:
    report["transfer"] = transfer
  lap("transfer")
  if "sweep_t_bar" in report:
    _plot_sweep(report["sweep_t_bar"], "t_bar", os.path.join(workdir, "figure4.png"), "t̄")
  for name, fig in SWEEPS.items():  # Figures 5–6: one sub-run (trigger, fine-tune, evaluation) per value
    if config.diff2.get(f"sweep_{name}"):
      write_report(workdir, report, report_markdown(config, report))  # a kill during the sweep loses nothing
      report[f"sweep_{name}"] = run_sweep(config, workdir, name, report)
      _plot_sweep(report[f"sweep_{name}"], name, os.path.join(workdir, f"{fig}.png"), name.replace("_", " "))
  lap("sweeps")
  names = list(clock)  # wall seconds per stage (a resumed stage counts only its loading time)
  report["seconds"] = {b: round(clock[b] - clock[a], 1) for a, b in zip(names, names[1:])}
  write_report(workdir, report, report_markdown(config, report))
  print(report_markdown(config, report), flush=True)
  return report


def report_markdown(config, r):
  d = config.diff2
  rows = []
  for s, v in r["purification"].items():
    b, m = v["benign"], v["backdoored"]
    rows.append([s, b["asr"], m["asr"], b["clean_acc"], m["clean_acc"], b.get("robust_acc", "-"),
                 m.get("robust_acc", "-")])
  md = [f"# DIFF2 ({r['attack']}, trigger={d.trigger}, scheme={d.scheme}, α={d.alpha}, t̄={config.purify.t_bar})\n",
        f"Without purifier: clean ACC {r['no_purifier']['clean_acc']:.1%}, trigger ASR {r['no_purifier']['asr']:.1%}\n",
        "## Table 1–2: ASR, clean and robust ACC, benign φ vs backdoored φ*\n",
        markdown_table(["sampler", "ASR φ", "ASR φ*", "clean φ", "clean φ*", "robust φ", "robust φ*"], rows)]
  if "one_step" in r:
    b, m = r["one_step"]["benign"], r["one_step"]["backdoored"]
    md += ["\n## Table 7: one-step purification (one-shot x̂0 from t̄)\n",
           markdown_table(["ASR φ", "ASR φ*", "clean φ", "clean φ*"],
                          [[b["asr"], m["asr"], b["clean_acc"], m["clean_acc"]]])]
  if "transfer" in r:
    rows = [[k, v["benign"]["asr"], v["backdoored"]["asr"], v["benign"]["clean_acc"], v["backdoored"]["clean_acc"]]
            for k, v in r["transfer"].items()]
    md += ["\n## Table 3: transfer to other classifiers\n",
           markdown_table(["classifier", "ASR φ", "ASR φ*", "clean φ", "clean φ*"], rows)]
  if "certification" in r:
    c = r["certification"]
    rows = [[f"{m} / {k}"] + c[m][k] for m in ("benign", "backdoored") for k in ("clean", "trigger")]
    md += [f"\n## Table 6: certified ACC (σ = {c['sigma']}, N = {c['n']})\n",
           markdown_table(["model / inputs"] + [f"r = {x:g}" for x in c["radii"]], rows)]
  titles = {"t_bar": "Figure 4 (figure4.png): ASR against t̄", "alpha": "Figure 5 (figure5.png): mixing weight α",
            "trigger_size": "Figure 6 (figure6.png): trigger size (k×k patch, lower right)"}
  for name, title in titles.items():
    if f"sweep_{name}" in r:
      s = r[f"sweep_{name}"]
      rows = [[f"{k} {'φ' if m == 'benign' else 'φ*'}"] + s[m][k] for k in ("asr", "clean_acc", "robust_acc")
              if k in s["benign"] for m in ("benign", "backdoored")]  # per-attack robust ACC: report.json
      md += [f"\n## {title}, {config.purify.samplers[0]} purification\n",
             markdown_table([name] + [f"{v:g}" for v in s[name]], rows)]
  if "seconds" in r:
    md.append("\nWall time per stage (s): " + ", ".join(f"{k} {v:g}" for k, v in r["seconds"].items()) + "\n")
  md.append("\nFigure 3 grid (figure3.png) rows: clean, trigger, diffused trigger at t̄, purified by φ, "
            "purified by φ*.\n")
  return "\n".join(md)
