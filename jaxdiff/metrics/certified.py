"""Certified accuracy of randomised-smoothing results."""
from __future__ import annotations

import numpy as np


def certified_accuracy(rows, radii):
  """Fraction of inputs that are correct with certified radius ≥ r, for each r in ``radii``.

  ``rows``: a mapping with arrays ``correct`` (1/0) and ``radius`` (pixel-space ℓ2; 0 for an abstention,
  which is never correct), e.g. ``jaxdiff.robust.read_tsv(path)``.
  """
  correct, radius = np.asarray(rows["correct"]) == 1, np.asarray(rows["radius"])
  return [float(np.mean(correct & (radius >= r))) if len(radius) else 0.0 for r in radii]
