"""The distributions a release would upload: ``python -m build`` makes an sdist and a wheel that
``twine check`` accepts, and the wheel installs into a fresh virtual environment and runs there.

The fresh environment takes torch and the other dependencies from the environment running the
tests (a ``.pth`` file naming its site-packages, appended after the fresh environment's own), so
no multi-GB download happens; ``ttame_attr`` itself comes only from the wheel: the checkout is
neither on ``sys.path`` nor installed there, which the test asserts.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Folders that are not part of a source tree a user would build from (caches, outputs).
_NOT_SOURCE = {".git", ".venv", "__pycache__", "build", "dist", "_build", "_cache", "_cache_quick",
               ".pytest_cache", ".ruff_cache", ".hypothesis", "ttame_demo_output", "out"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if (n in _NOT_SOURCE or n.endswith(".egg-info")) and Path(folder, n).is_dir()}


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                                  f"{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a copy of the checkout (the checkout gets no build files)."""
    pytest.importorskip("build", reason="the dev extra installs build")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_not_source)
    # --no-isolation: build with this environment's setuptools (a dev dependency) instead of
    # downloading one into a throw-away environment; the result is the same files.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", src, cwd=tmp)
    return tmp / "dist"


def test_build_makes_an_sdist_and_a_wheel_twine_accepts(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert len(names) == 2 and names[0].endswith("-py3-none-any.whl") and names[1].endswith(".tar.gz"), names
    out = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()), cwd=dist)
    assert out.count("PASSED") == 2, out


def test_wheel_holds_the_package_data(dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "ttame_attr/py.typed" in names
    assert any(n.startswith("ttame_attr/classifiers/weights/") and n.endswith(".pt") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)
    extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines()
              if line.startswith("Provides-Extra:")}
    assert {"timm", "transformers", "export", "plot", "metrics", "demo", "dev"} <= extras
    assert wheel.stat().st_size < 2_000_000  # lean: code, docs strings and the demo classifier


def test_wheel_installs_and_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    fresh_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                           cwd=tmp_path).strip())
    # torch & co. from this environment, after the fresh environment's own site-packages. A path
    # line in a .pth file does not run the .pth files found there, so this environment's editable
    # install of ttame_attr (if any) stays invisible.
    (fresh_site / "_deps_from_test_env.pth").write_text(
        "\n".join(p for p in site.getsitepackages() if "site-packages" in p) + "\n", encoding="utf-8")
    wheel = next(dist.glob("*.whl"))
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet",
         wheel, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    script = (
        "import json, torch, ttame_attr\n"
        "from importlib.resources import files\n"
        "from ttame_attr import TTAME\n"
        "from ttame_attr.classifiers import load_reference_classifier\n"
        "net, info = load_reference_classifier()\n"
        "explainer = TTAME(net.eval(), input_size=(3, 64, 64))\n"
        "maps = explainer.attribute(torch.rand(2, 3, 64, 64))\n"
        "print(json.dumps({'file': ttame_attr.__file__, 'version': ttame_attr.__version__,\n"
        "                  'typed': files('ttame_attr').joinpath('py.typed').is_file(),\n"
        "                  'shape': list(maps.shape), 'layers': explainer.layers}))\n"
    )
    report = json.loads(_run(python, "-c", script, cwd=tmp_path, env=env).strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(fresh_site.resolve()), report["file"]
    assert report["typed"] and report["shape"] == [2, 1, 64, 64] and report["layers"]
    version = _run(env_dir / "bin" / "ttame", "--version", cwd=tmp_path, env=env)
    assert version.strip() == f"ttame_attr {report['version']}"
