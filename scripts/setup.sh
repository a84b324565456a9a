#!/usr/bin/env bash
# Create .venv (if missing) and install ttame_attr with the given extras.
# Usage: bash scripts/setup.sh [extras]      e.g. bash scripts/setup.sh dev
#
# torch is the big part. From PyPI, Linux gets its CUDA build: about 3 GB to download and a
# .venv of about 6 GB, several minutes. A machine without an NVIDIA GPU needs only the CPU build
# (a few hundred MB); get it by naming PyTorch's CPU index:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/demo.sh
# or install it into .venv yourself before running a script:
#   python3 -m venv .venv
#   .venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
# A .venv that already has torch keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python_bin="${PYTHON:-python3}"
say() { echo "[setup] $*"; }
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$python_bin" --version 2>&1)"
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
quiet="--quiet"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        say "installing torch and torchvision from $TORCH_INDEX_URL"
        .venv/bin/python -m pip install torch torchvision --index-url "$TORCH_INDEX_URL"
    else
        say "installing torch from PyPI: on Linux this is the CUDA build (about 3 GB to download, a 6 GB"
        say ".venv, several minutes)."
        if ! command -v nvidia-smi >/dev/null 2>&1; then
            say "No NVIDIA GPU found: the CPU build is enough and much smaller. Stop here (Ctrl-C) and"
            say "rerun with  TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu  before the command, e.g."
            say "  TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/demo.sh"
            if [ -t 1 ]; then say "Continuing in 10 s."; sleep 10; fi
        fi
        quiet=""  # show pip's download progress
    fi
fi
if [ -n "$extras" ]; then
    say "installing ttame_attr[${extras}] into .venv (editable)"
    .venv/bin/python -m pip install $quiet -e ".[${extras}]"
else
    say "installing ttame_attr into .venv (editable)"
    .venv/bin/python -m pip install $quiet -e .
fi
say "done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA" if torch.version.cuda else "CPU")')"
