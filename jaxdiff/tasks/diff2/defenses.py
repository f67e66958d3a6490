"""DIFF2's defences of one φ / φ* pair (Table 8, Appendix C.1) measured after the evaluation: each adds to report.json ``"defense"``
(its name) and ``"rows"``: [{model ("phi" | "phi_star"), setting, clean_acc, adv_acc (null where no attack ran),
asr}], all in pixel space [0, 1] with the first sampler of ``config.purify.samplers``."""
from __future__ import annotations

import os

import jax

from jaxdiff.report import plot_panels
from jaxdiff.robust import PurifiedClassifier
from jaxdiff.tasks import defence
from jaxdiff.tasks.common import purifier_from_config, schedule_from_config
from jaxdiff.tasks.diff2.evaluate import measure

LABELS = {"benign": "phi", "backdoored": "phi_star"}


def eps_label(eps):
  """8/255 → "8/255" (radii on the 8-bit grid read as the paper writes them), others as numbers, 0 → "none"."""
  if eps == 0:
    return "none"
  k = eps * 255
  return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"


def row(model, setting, res):
  """A pinned report row; ``model`` "phi" | "phi_star" | a population name. ``adv_acc`` is the per-input worst
  case over the attacks run; each attack's own figure is ``adv_acc_pgd`` / ``adv_acc_autoattack`` (Table 8's
  columns) where it ran."""
  return {"model": model, "setting": setting, "clean_acc": res["clean_acc"], "adv_acc": res.get("robust_acc"),
          "asr": res["asr"], **{"adv_acc_" + k[len("robust_acc_"):]: v for k, v in res.items()
                                if k.startswith("robust_acc_")}}


def reprojection(config, report, classifier, denoiser, params, x, y, xr):
  """Table 8: the purified x̂ projected into the ℓ∞ ball of radius ε_r around the purifier's input, for each
  ε_r of ``defense.reproject_eps`` (the attacks differentiate through the projection); ε_r = 0 is the
  undefended row, taken from the main evaluation."""
  sampler = config.purify.samplers[0]
  key = jax.random.key(config.seed + 17)
  rows = [row(LABELS[m], "none", report["purification"][sampler][m]) for m in LABELS]
  for eps in config.defense.reproject_eps:
    logits = PurifiedClassifier(purifier_from_config(config, denoiser, sampler, reproject_eps=float(eps)), classifier)
    for m in LABELS:
      res = measure(config, logits, params[m], x, y, xr, key, f"f∘φ[{sampler}, ε_r {eps_label(eps)}] {m}")
      rows.append(row(LABELS[m], f"reproject_eps={eps_label(eps)}", res))
  return rows


def anp(config, report, classifier, denoiser, params, x, y, xr):
  """Appendix C.1 (Fig. 11): ANP on φ* (and, with ``defense.anp_models`` holding "benign", on φ) for each learning
  rate of ``defense.anp_lrs``: masks fitted on clean training images (``anp_iterations`` batches of
  ``anp_batch``), channels below ``anp_threshold`` pruned, then clean ACC / ASR (and robust ACC if an attack is
  configured) of f∘φ_pruned. Rows carry the ``pruned_fraction``; figure11.png plots ASR and clean ACC against the
  rate."""
  d = config.defense
  sampler = config.purify.samplers[0]
  key = jax.random.key(config.seed + 11)  # the main evaluation's: at rate 0 (nothing pruned) the rows equal it
  logits = PurifiedClassifier(purifier_from_config(config, denoiser, sampler), classifier)
  schedule = schedule_from_config(config.purify.diffusion)
  rows = [row(LABELS[m], "none", report["purification"][sampler][m]) for m in d.anp_models]
  for m in d.anp_models:
    for lr, pruned_params, fraction in defence.anp_sweep(d, denoiser, params[m]["denoiser"], schedule, config.data,
                                                        config.seed + 31, jax.random.fold_in(key, 1), LABELS[m]):
      res = measure(config, logits, {**params[m], "denoiser": pruned_params}, x, y, xr, key, f"f∘φ[ANP {lr:g}] {m}")
      rows.append({**row(LABELS[m], f"anp_lr={lr:g}", res), "pruned_fraction": fraction})
  return rows


def plot_anp(report, out_png):
  """Fig. 11: ASR and clean ACC of f∘φ (pruned by ANP) against the ANP learning rate, one curve per model."""
  lrs, panels = None, {"ASR": {}, "clean ACC": {}}
  for model in dict.fromkeys(r["model"] for r in report["rows"]):
    rs = [r for r in report["rows"] if r["model"] == model and r["setting"].startswith("anp_lr=")]
    lrs = [float(r["setting"].split("=")[1]) for r in rs]
    panels["ASR"][model] = [r["asr"] for r in rs]
    panels["clean ACC"][model] = [r["clean_acc"] for r in rs]
  plot_panels(lrs, panels, out_png, "ANP learning rate", xscale="log" if min(lrs) > 0 else "symlog")


DEFENSES = {"reproject": reprojection, "anp": anp}
FIGURES = {"anp": ("figure11.png", plot_anp)}


def run_defense(config, workdir, report, classifier, denoiser, params, x, y, xr):
  """Adds ``defense`` and ``rows`` to ``report`` for ``config.defense.name`` (and its figure to ``workdir``)."""
  name = config.defense.name
  report["defense"] = name
  report["rows"] = DEFENSES[name](config, report, classifier, denoiser, params, x, y, xr)
  if name in FIGURES:
    png, plot = FIGURES[name]
    plot(report, os.path.join(workdir, png))
  return report
