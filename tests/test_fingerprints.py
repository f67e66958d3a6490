"""The one check that keeps reruns from mixing results made under other settings."""
import json

import pytest

from jaxdiff.errors import IncompatibleResultsError
from jaxdiff.fingerprints import check_or_record, differences, file_digest


def test_record_reuse_refuse_and_overwrite(tmp_path):
  side = str(tmp_path / "r.fingerprint.json")
  fp = {"certify": {"n": 300, "sigmas": (0.5,)}, "seed": 0}
  assert check_or_record(side, fp, what="results") is False  # first run: recorded
  assert json.load(open(side)) == {"certify": {"n": 300, "sigmas": [0.5]}, "seed": 0}
  assert check_or_record(side, fp, what="results") is True  # same settings: reuse
  other = {"certify": {"n": 100, "sigmas": (0.5,)}, "seed": 0}
  with pytest.raises(IncompatibleResultsError, match=r"certify\.n: 300 in the workdir, 100 now.*--config\.overwrite=True"):
    check_or_record(side, other, what="results")
  assert check_or_record(side, other, what="results", overwrite=True) is False  # replaced
  assert check_or_record(side, other, what="results") is True


def test_differences_name_every_changed_leaf():
  old = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
  new = {"a": {"b": 2, "c": [1, 2]}, "e": 3}
  assert differences(old, new) == ["a.b: 1 in the workdir, 2 now", 'd: "x" in the workdir, "(unset)" now',
                                   'e: "(unset)" in the workdir, 3 now']


def test_file_digest_follows_the_bytes(tmp_path):
  p = tmp_path / "w.bin"
  p.write_bytes(b"a" * 100)
  d1 = file_digest(str(p))
  p.write_bytes(b"a" * 99 + b"b")
  assert file_digest(str(p)) != d1 and len(d1) == 16
