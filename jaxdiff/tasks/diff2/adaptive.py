"""DIFF2 against adversarially trained classifiers (Table 9): the target classifiers are adversarially trained
(``defense.advtrain_targets``, e.g. by configs/classifier_digits_adv.py), and DIFF2 runs non-adaptive — the trigger
optimised on the standard surrogates of ``diff2.surrogates`` — and adaptive — the trigger optimised on the
adversarially trained surrogates of ``defense.adaptive_surrogates`` — untargeted and targeted. Each (attack, mode)
is a full DIFF2 sub-run (trigger, fine-tune, evaluation with the first sampler) in WORKDIR/<attack>_<mode>/,
re-used while its config is unchanged. Rows (pinned): model phi | phi_star, setting
"<attack>,<mode>,target=<classifier folder name>", clean_acc, adv_acc (null), asr.
"""
from __future__ import annotations

import os
import time

import ml_collections

from jaxdiff.report import markdown_table, write_report
from jaxdiff.tasks.config import validate
from jaxdiff.tasks.diff2.defenses import LABELS, row
from jaxdiff.tasks.diff2.pipeline import run_point

MODES = ("non_adaptive", "adaptive")


def point_config(config, attack, mode):
  """The DIFF2 sub-run of one Table-9 cell: ``attack`` "untargeted" | "targeted", ``mode`` "non_adaptive" |
  "adaptive" (trigger from ``defense.adaptive_surrogates``); evaluated on ``classifier.path`` and on every
  ``defense.advtrain_targets`` (Table 3's transfer path), first sampler, no attacks, no certification."""
  d = config.defense
  c = ml_collections.ConfigDict(config.to_dict())
  c.diff2.update(targeted=attack == "targeted", transfer_classifiers=tuple(d.advtrain_targets), sweep_t_bar=(),
                 sweep_alpha=(), sweep_trigger_size=(), stop_after="")
  if mode == "adaptive":
    c.diff2.surrogates = tuple(d.adaptive_surrogates)
  c.purify.update(samplers=(config.purify.samplers[0],), one_step=False)
  c.certify.n = 0
  c.attack.update(pgd_steps=0, autoattack=False)
  del c["defense"]
  return c


def target_name(path):
  return os.path.basename(os.path.normpath(path.split(":", 1)[-1]))


def run_advtrain(config, workdir):
  validate(config)
  start = time.time()
  first = config.purify.samplers[0]
  rows, seconds = [], {}
  for attack in config.defense.advtrain_attacks:
    for mode in MODES:
      t = time.time()
      sub = run_point(point_config(config, attack, mode), os.path.join(workdir, f"{attack}_{mode}"))
      seconds[f"{attack}_{mode}"] = round(time.time() - t, 1)
      results = {config.classifier.path: sub["purification"][first], **sub.get("transfer", {})}
      for path, res in results.items():
        for m, label in LABELS.items():
          rows.append(row(label, f"{attack},{mode},target={target_name(path)}", res[m]))
  report = {"defense": "advtrain", "rows": rows, "seconds": {**seconds, "total": round(time.time() - start, 1)}}
  md = advtrain_markdown(config, report)
  write_report(workdir, report, md)
  print(md, flush=True)
  return report


def advtrain_markdown(config, report):
  cells = {}
  for r in report["rows"]:
    cells.setdefault(r["setting"], {})[r["model"]] = r
  table = [[*setting.replace("target=", "").split(","), v["phi"]["clean_acc"], v["phi_star"]["clean_acc"],
            v["phi"]["asr"], v["phi_star"]["asr"]] for setting, v in cells.items()]
  return "\n".join([
      f"# DIFF2 against adversarially trained classifiers (Table 9), {config.purify.samplers[0]} purification, "
      f"α = {config.diff2.alpha}\n",
      "non_adaptive: trigger from " + ", ".join(map(target_name, config.diff2.surrogates)) + "; adaptive: from "
      + ", ".join(map(target_name, config.defense.adaptive_surrogates)) + ".\n",
      markdown_table(["attack", "mode", "target", "clean φ", "clean φ*", "ASR φ", "ASR φ*"], table),
      "\nWall time per sub-run (s): " + ", ".join(f"{k} {v:g}" for k, v in report["seconds"].items()) + "\n"])
