"""JSON + markdown reports."""
from __future__ import annotations

import json
import os

from jaxdiff.io import atomic_write, write_json


def markdown_table(header, rows, floatfmt="{:.1%}"):
  def fmt(v):
    return floatfmt.format(v) if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def write_report(workdir, report: dict, markdown: str, name="report"):
  """Writes WORKDIR/{name}.json and WORKDIR/{name}.md atomically. Where the run fetched or trained its models
  (WORKDIR/sources.json, written by ``jaxdiff.tasks.run``), both say so: ``"sources"`` in the JSON, a table in the
  markdown."""
  sources = _read_json(os.path.join(workdir, "sources.json"))
  if sources and "sources" not in report:
    report = {**report, "sources": sources}
    rows = [(field, s.get("ref", ""), _origin(s)) for field, s in sources.items()]
    markdown = markdown.rstrip("\n") + "\n\n## Model sources\n\n" + markdown_table(("field", "reference", "origin"), rows)
  write_json(os.path.join(workdir, f"{name}.json"), report)
  atomic_write(os.path.join(workdir, f"{name}.md"), markdown)


def _origin(s):
  """One phrase for a sources.json record: the hub revision, the URL's sha256, or the training stage."""
  if "revision" in s:
    return f"hub {s['repo']} at {s['revision'][:12]}"
  if "sha256" in s:
    return f"sha256 {s['sha256'][:16]}{' (pinned)' if s.get('pinned') else ' (first download)'}"
  acc = s.get("test_accuracy")
  return f"trained by {s.get('config')} (fingerprint {s.get('fingerprint')}, {s.get('steps')} steps" + (
      f", test accuracy {acc:.1%})" if isinstance(acc, float) else ")")


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
