#!/usr/bin/env bash
# Creates .venv and installs jaxdiff with its test extra (CPU; torch pinned to the offline CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
