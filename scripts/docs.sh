#!/usr/bin/env bash
# Builds the API reference (Sphinx autodoc over jaxdiff's public packages) into docs/_build/html; any Sphinx warning
# is an error. Installs the docs extra (sphinx) into the project's venv first (scripts/setup.sh makes the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q -e '.[docs]'
JAX_PLATFORMS=cpu .venv/bin/python -m sphinx -W --keep-going -q -b html docs/api docs/_build/html
echo "API reference: docs/_build/html/index.html"
