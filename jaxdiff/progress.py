"""Progress bars with rate and ETA (tqdm), quiet when not on a terminal unless asked."""
import os
import sys

from tqdm.auto import tqdm


def progress(iterable=None, total=None, initial=0, desc="", unit="it"):
  """tqdm bar (rate and ETA); JAXDIFF_PROGRESS=0 turns bars off (tests, logs)."""
  disable = os.environ.get("JAXDIFF_PROGRESS", "1") == "0"
  return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=disable,
              mininterval=1.0, file=sys.stderr, smoothing=0.1)
