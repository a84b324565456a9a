#!/usr/bin/env bash
# Set up .venv and run the end-to-end demo on the embedded synthetic dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
.venv/bin/ttame demo "$@"
