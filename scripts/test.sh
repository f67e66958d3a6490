#!/usr/bin/env bash
# The README's test command: the import-layer contracts (.importlinter), then the fast test tier on every
# core (pytest-xdist; tests marked xdist_group(name) run on one worker, so they share its session fixtures).
# Add `-m slow` or `-m "slow or not slow"` for the heavy tier, `-n 0` to run serially.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lint-imports --no-logo --no-cache
exec .venv/bin/python -m pytest -q -n auto --dist loadgroup "$@"
