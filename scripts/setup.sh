#!/usr/bin/env bash
# Creates .venv and installs jaxdiff with its test extra (CPU; torch pinned to the offline CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# torchattacks (the AutoAttack peer of launch/bench.py's attack suite) pins requests~=2.25.1, which it never imports
# and which would downgrade requests and urllib3 for everything else: installed without its dependencies.
.venv/bin/python -m pip install -q --no-deps torchattacks==3.5.1
