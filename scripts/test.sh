#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite (docs build and doctests included).
#   bash scripts/test.sh            everything, the tests marked slow included (what CI runs)
#   bash scripts/test.sh --quick    the edit-test loop: every test but those marked slow
# Any other arguments go to pytest (e.g. bash scripts/test.sh --quick tests/core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
args=()
for arg in "$@"; do
    if [[ "$arg" == "--quick" ]]; then
        args+=(-m "not slow")
    else
        args+=("$arg")
    fi
done
.venv/bin/python -m pytest -q -p no:cacheprovider "${args[@]+"${args[@]}"}"
