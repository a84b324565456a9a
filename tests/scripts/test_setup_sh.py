"""scripts/setup.sh says what it installs, and how to get torch's CPU build.

The script runs on a copy of itself against a stand-in ``.venv/bin/python`` that records its
arguments (nothing is installed or downloaded); ``import torch`` succeeds or fails as asked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/calls.log"
if [ "$1" = "-c" ]; then
    case "$2" in
        "import torch") exit {torch_status} ;;
        *) echo "torch 9.9 CPU" ;;
    esac
fi
exit 0
"""


def run_setup(tmp_path: Path, has_torch: bool, **env: str) -> tuple[str, list[str]]:
    if shutil.which("bash") is None:
        pytest.fail("bash is needed to run scripts/setup.sh")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON.replace("{torch_status}", "0" if has_torch else "1"), encoding="utf-8")
    python.chmod(0o755)
    # a PATH with the tools the script needs and no nvidia-smi: a machine without an NVIDIA GPU
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "dirname", "sleep"):
        (tools / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(["bash", "scripts/setup.sh", "demo"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": str(tools), "HOME": str(tmp_path), **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, (bin_dir / "calls.log").read_text(encoding="utf-8").splitlines()


def test_without_torch_it_says_what_it_installs_and_how_to_get_the_cpu_build(tmp_path: Path) -> None:
    out, calls = run_setup(tmp_path, has_torch=False)
    assert "installing torch from PyPI" in out and "CUDA build" in out
    assert f"TORCH_INDEX_URL={CPU_INDEX} bash scripts/demo.sh" in out
    assert "installing ttame_attr[demo] into .venv" in out
    install = [c for c in calls if c.startswith("-m pip install") and "-e" in c.split()]
    assert install == ["-m pip install -e .[demo]"]  # not quiet: pip shows its download progress


def test_torch_index_url_installs_torch_from_that_index_first(tmp_path: Path) -> None:
    out, calls = run_setup(tmp_path, has_torch=False, TORCH_INDEX_URL=CPU_INDEX)
    installs = [c for c in calls if c.startswith("-m pip install") and "--upgrade" not in c]
    assert installs == [f"-m pip install torch torchvision --index-url {CPU_INDEX}",
                        "-m pip install --quiet -e .[demo]"]
    assert f"installing torch and torchvision from {CPU_INDEX}" in out


def test_a_venv_with_torch_keeps_it_and_installs_quietly(tmp_path: Path) -> None:
    out, calls = run_setup(tmp_path, has_torch=True)
    assert "torch" not in " ".join(c for c in calls if c.startswith("-m pip install"))
    assert "-m pip install --quiet -e .[demo]" in calls
    assert "CUDA build" not in out and "done: torch 9.9 CPU" in out
