#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite (docs build and doctests included).
#   bash scripts/test.sh            everything, the tests marked slow included (what CI runs)
#   bash scripts/test.sh --quick    the edit-test loop: every test but those marked slow
# Any other arguments go to pytest (e.g. bash scripts/test.sh --quick tests/core).
set -euo pipefail
cd "$(dirname "$0")/.."
# The HTML reports (audit, demo) are checked in headless Chromium (tests/audit/test_browser.py):
# install Debian's package when it is missing (as root, or through sudo).
if ! command -v chromium >/dev/null 2>&1; then
    echo "scripts/test.sh: installing chromium for the browser checks of the HTML reports"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "scripts/test.sh: cannot install chromium (not root, no sudo); the browser tests will fail" >&2
    fi
fi
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
