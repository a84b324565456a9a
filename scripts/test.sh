#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite (docs build and doctests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
