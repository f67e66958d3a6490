#!/usr/bin/env bash
# Runs the test suite (fast tier; add `-m slow` or `-m "slow or not slow"` for the heavy tier).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
