"""DIFF2 report: markdown tables (Tables 1–3, 6, 7; Figures 4–6) and the sweep plots."""
from __future__ import annotations

from jaxdiff.report import markdown_table, plot_panels

SWEEP_TITLES = {"t_bar": "Figure 4 (figure4.png): ASR against t̄", "alpha": "Figure 5 (figure5.png): mixing weight α",
                "trigger_size": "Figure 6 (figure6.png): trigger size (k×k patch, lower right)"}
SWEEP_FIGURES = {"t_bar": "figure4", "alpha": "figure5", "trigger_size": "figure6"}
_METRIC_TITLES = {"asr": "ASR", "clean_acc": "clean ACC", "robust_acc": "robust ACC"}


def plot_sweep(sweep, name, out_png):
  """ASR / clean / robust ACC of φ and φ* against the swept value (Figures 4–6)."""
  panels = {_METRIC_TITLES[k]: {"φ": sweep["benign"][k], "φ*": sweep["backdoored"][k]}
            for k in _METRIC_TITLES if k in sweep["benign"]}
  plot_panels(sweep[name], panels, out_png, "t̄" if name == "t_bar" else name.replace("_", " "))


def _attacks(config):
  a = config.attack
  run = ([f"PGD-{a.pgd_steps}"] if a.pgd_steps else []) + (["AutoAttack"] if a.autoattack else [])
  return (" and ".join(run) + f", ε = {a.eps:g}") if run else "no attack"


def report_markdown(config, report):
  diff2, purify = config.diff2, config.purify
  rows = []
  for sampler, res in report["purification"].items():
    benign, backdoored = res["benign"], res["backdoored"]
    rows.append([sampler, benign["asr"], backdoored["asr"], benign["clean_acc"], backdoored["clean_acc"],
                 benign.get("robust_acc", "-"), backdoored.get("robust_acc", "-")])
  no_pur = report["no_purifier"]
  md = [f"# DIFF2 ({report['attack']}, trigger={diff2.trigger}, scheme={diff2.scheme}, α={diff2.alpha}, "
        f"t̄={purify.t_bar})\n",
        f"Without purifier: clean ACC {no_pur['clean_acc']:.1%}, trigger ASR {no_pur['asr']:.1%}\n",
        "## Table 1–2: ASR, clean and robust ACC, benign φ vs backdoored φ*\n",
        markdown_table(["sampler", "ASR φ", "ASR φ*", "clean φ", "clean φ*", "robust φ", "robust φ*"], rows)]
  if "one_step" in report:
    benign, backdoored = report["one_step"]["benign"], report["one_step"]["backdoored"]
    md += ["\n## Table 7: one-step purification (one-shot x̂0 from t̄)\n",
           markdown_table(["ASR φ", "ASR φ*", "clean φ", "clean φ*"],
                          [[benign["asr"], backdoored["asr"], benign["clean_acc"], backdoored["clean_acc"]]])]
  if "transfer" in report:
    rows = [[k, v["benign"]["asr"], v["backdoored"]["asr"], v["benign"]["clean_acc"], v["backdoored"]["clean_acc"]]
            for k, v in report["transfer"].items()]
    md += ["\n## Table 3: transfer to other classifiers\n",
           markdown_table(["classifier", "ASR φ", "ASR φ*", "clean φ", "clean φ*"], rows)]
  if "certification" in report:
    cert = report["certification"]
    rows = [[f"{m} / {k}"] + cert[m][k] for m in ("benign", "backdoored") for k in ("clean", "trigger")]
    md += [f"\n## Table 6: certified ACC (σ = {cert['sigma']}, N = {cert['n']})\n",
           markdown_table(["model / inputs"] + [f"r = {r:g}" for r in cert["radii"]], rows)]
  if "rows" in report:
    pruned = any("pruned_fraction" in r for r in report["rows"])
    per_attack = [k for k in ("adv_acc_pgd", "adv_acc_autoattack") if any(k in r for r in report["rows"])]
    per_attack = per_attack if len(per_attack) > 1 else []  # one attack: its column is adv ACC
    rows = [[r["model"], r["setting"], r["clean_acc"], "-" if r["adv_acc"] is None else r["adv_acc"]]
            + [r.get(k, "-") for k in per_attack] + [r["asr"]]
            + ([r.get("pruned_fraction", 0.0)] if pruned else []) for r in report["rows"]]
    md += [f"\n## Defence: {report['defense']} ({purify.samplers[0]} purification; adversarial ACC under "
           f"{_attacks(config)}, worst case per input)\n",
           markdown_table(["model", "setting", "clean ACC", "adv ACC"] + [k[len("adv_acc_"):] for k in per_attack]
                          + ["ASR"] + (["channels pruned"] if pruned else []), rows)]
    if report["defense"] == "anp":
      md.append("\nFigure 11 (figure11.png): ASR and clean ACC against the ANP learning rate.\n")
  for name, title in SWEEP_TITLES.items():
    if f"sweep_{name}" in report:
      sweep = report[f"sweep_{name}"]
      rows = [[f"{k} {'φ' if m == 'benign' else 'φ*'}"] + sweep[m][k] for k in _METRIC_TITLES
              if k in sweep["benign"] for m in ("benign", "backdoored")]  # per-attack robust ACC: report.json
      md += [f"\n## {title}, {purify.samplers[0]} purification\n",
             markdown_table([name] + [f"{v:g}" for v in sweep[name]], rows)]
  if "seconds" in report:
    md.append("\nWall time per stage (s): " + ", ".join(f"{k} {v:g}" for k, v in report["seconds"].items()) + "\n")
  md.append("\nFigure 3 grid (figure3.png) rows: clean, trigger, diffused trigger at t̄, purified by φ, "
            "purified by φ*.\n")
  return "\n".join(md)
