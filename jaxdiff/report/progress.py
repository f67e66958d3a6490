"""Progress bars with rate and ETA (tqdm), quiet when not on a terminal unless asked."""
import os
import sys

from tqdm.auto import tqdm


def progress(total=None, initial=0, desc="", unit="it"):
  disable = os.environ.get("JAXDIFF_PROGRESS", "1") == "0"
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=disable,
              mininterval=1.0, file=sys.stderr, smoothing=0.1)
