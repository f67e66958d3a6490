"""DIFF2's defences (§5.6–5.7, Appendix C.1) measured on φ and φ*: each adds to report.json ``"defense"``
(its name) and ``"rows"``: [{model ("phi" | "phi_star"), setting, clean_acc, adv_acc (null where no attack ran),
asr}], all in pixel space [0, 1] with the first sampler of ``config.purify.samplers``."""
from __future__ import annotations

import jax

from jaxdiff.tasks.common import purifier_from_config
from jaxdiff.robust import PurifiedClassifier
from jaxdiff.tasks.diff2.evaluate import measure

LABELS = {"benign": "phi", "backdoored": "phi_star"}


def eps_label(eps):
  """8/255 → "8/255" (radii on the 8-bit grid read as the paper writes them), others as numbers, 0 → "none"."""
  if eps == 0:
    return "none"
  k = eps * 255
  return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"


def row(model, setting, res):
  return {"model": LABELS[model], "setting": setting, "clean_acc": res["clean_acc"],
          "adv_acc": res.get("robust_acc"), "asr": res["asr"]}


def reprojection(config, report, classifier, denoiser, params, x, y, xr):
  """Table 8: the purified x̂ projected into the ℓ∞ ball of radius ε_r around the purifier's input, for each
  ε_r of ``defense.reproject_eps`` (the attacks differentiate through the projection); ε_r = 0 is the
  undefended row, taken from the main evaluation."""
  sampler = config.purify.samplers[0]
  key = jax.random.key(config.seed + 17)
  rows = [row(m, "none", report["purification"][sampler][m]) for m in LABELS]
  for eps in config.defense.reproject_eps:
    logits = PurifiedClassifier(purifier_from_config(config, denoiser, sampler, reproject_eps=float(eps)), classifier)
    for m in LABELS:
      res = measure(config, logits, params[m], x, y, xr, key, f"f∘φ[{sampler}, ε_r {eps_label(eps)}] {m}")
      rows.append(row(m, f"reproject_eps={eps_label(eps)}", res))
  return rows


DEFENSES = {"reproject": reprojection}


def run_defense(config, report, classifier, denoiser, params, x, y, xr):
  """Adds ``defense`` and ``rows`` to ``report`` for ``config.defense.name``."""
  name = config.defense.name
  report["defense"] = name
  report["rows"] = DEFENSES[name](config, report, classifier, denoiser, params, x, y, xr)
  return report
