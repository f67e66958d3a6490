"""Host loops over batches of examples (evaluations, attacks), with a progress bar and per-batch keys."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.progress import progress


def map_batches(fn, arrays, batch, *, key=None, desc=None):
  """``fn(*[a[i:i+batch] for a in arrays])`` — plus ``fold_in(key, i)`` as last argument when ``key`` is
  given, i the batch's first row (so results do not depend on which batches ran before) — over the rows,
  concatenated as one numpy array. ``desc`` shows a progress bar (images/s and ETA)."""
  n = len(arrays[0])
  bar = progress(total=n, desc=desc, unit="img") if desc else None
  out = []
  for i in range(0, n, batch):
    args = [jnp.asarray(a[i:i + batch]) for a in arrays]
    if key is not None:
      args.append(jax.random.fold_in(key, i))
    out.append(np.asarray(fn(*args)))
    if bar is not None:
      bar.update(len(out[-1]))
  if bar is not None:
    bar.close()
  return np.concatenate(out)
