"""JSON + markdown reports."""
from __future__ import annotations

import os

from jaxdiff.io import atomic_write, write_json


def markdown_table(header, rows, floatfmt="{:.1%}"):
  def fmt(v):
    return floatfmt.format(v) if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def write_report(workdir, report: dict, markdown: str, name="report"):
  """Writes WORKDIR/{name}.json and WORKDIR/{name}.md atomically."""
  write_json(os.path.join(workdir, f"{name}.json"), report)
  atomic_write(os.path.join(workdir, f"{name}.md"), markdown)
