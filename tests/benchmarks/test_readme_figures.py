"""``benchmarks/readme_figures.py``: README's marked figures must equal the committed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "readme_figures.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures as rf  # noqa: E402

TABLE = "| method | AD 15% ↓ |\n|---|---:|\n| T-TAME | 2.45 ± 0.10 |\n"
README = """# Project

torchvision <!-- results: results/zoo.json#coverage.torchvision.fraction -->80/80<!-- /results -->
cg: <!-- results: results/imp.json#summary.cg_over_direct format="{:.1f}x" -->15.0x<!-- /results --> slower.
dot: <!-- results: results/imp.json#metric_seconds.road_0.1 format="{:.2f}" -->0.25<!-- /results -->,
spaces: <!-- results: results/imp.json#ratios.resnet50.fit step/floor -->1.03<!-- /results -->.

<!-- results: results/quality.md#cnn -->
| method | AD 15% ↓ |
|---|---:|
| T-TAME | 2.45 ± 0.10 |
<!-- /results -->

<!-- results: results/quality.json#tables.cnn -->
| method | AD 15% ↓ |
|---|---:|
| T-TAME | 2.45 ± 0.10 |
<!-- /results -->
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    (results / "zoo.json").write_text(json.dumps(
        {"coverage": {"torchvision": {"ok": 80, "total": 80, "fraction": "80/80"}}}))
    (results / "imp.json").write_text(json.dumps({
        "summary": {"cg_over_direct": 15.04}, "metric_seconds": {"road_0.1": 0.254},
        "ratios": {"resnet50": {"fit step/floor": 1.03}}}))
    (results / "quality.json").write_text(json.dumps({"tables": {"cnn": TABLE}}))
    (results / "quality.md").write_text(
        f"# Quality\n\n<!-- table: cnn -->\n{TABLE}<!-- /table -->\n\nNotes.\n")
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def test_the_repository_readme_matches_the_committed_results() -> None:
    # Passes trivially while README marks no figure; fails as soon as a marked one differs.
    assert rf.check(ROOT / "README.md", ROOT) == []


def test_matching_figures_pass(project: Path) -> None:
    assert len(rf.find_figures((project / "README.md").read_text())) == 6
    assert rf.check(project / "README.md") == []


def test_an_inline_figure_that_differs_fails(project: Path) -> None:
    readme = project / "README.md"
    readme.write_text(README.replace("-->80/80<!--", "-->79/80<!--"))
    problems = rf.check(readme)
    assert len(problems) == 1
    assert "zoo.json#coverage.torchvision.fraction" in problems[0] and "'79/80'" in problems[0]
    assert "line 3" in problems[0]


def test_a_result_that_changed_fails_until_written(project: Path) -> None:
    imp = project / "results" / "imp.json"
    data = json.loads(imp.read_text())
    data["summary"]["cg_over_direct"] = 12.96
    imp.write_text(json.dumps(data))
    problems = rf.check(project / "README.md")
    assert len(problems) == 1 and "'13.0x'" in problems[0] and "'15.0x'" in problems[0]
    assert rf.write(project / "README.md") == 1
    assert rf.check(project / "README.md") == []
    assert "-->13.0x<!-- /results --> slower." in (project / "README.md").read_text()


def test_a_table_that_differs_fails_and_write_restores_it(project: Path) -> None:
    readme = project / "README.md"
    readme.write_text(README.replace("| T-TAME | 2.45 ± 0.10 |\n<!-- /results -->\n\n<!-- results: "
                                     "results/quality.json", "| T-TAME | 2.40 ± 0.10 |\n<!-- /results "
                                     "-->\n\n<!-- results: results/quality.json"))
    problems = rf.check(readme)
    assert len(problems) == 1 and "quality.md#cnn" in problems[0]
    assert rf.write(readme) == 1
    assert readme.read_text() == README


@pytest.mark.parametrize("bad, message", [
    ("results/zoo.json#coverage.timm.fraction", "no key 'timm'"),
    ("results/missing.json#a", "does not exist"),
    ("results/zoo.json#coverage.torchvision", "a JSON object or list"),
    ("results/quality.md#vit", "no '<!-- table: vit -->' section"),
])
def test_a_source_that_cannot_give_the_figure_fails(project: Path, bad: str, message: str) -> None:
    readme = project / "README.md"
    readme.write_text(README.replace("results/zoo.json#coverage.torchvision.fraction", bad))
    problems = rf.check(readme)
    assert len(problems) == 1 and message in problems[0], problems


def test_an_unclosed_marker_fails(project: Path) -> None:
    readme = project / "README.md"
    readme.write_text(README + "\n<!-- results: results/zoo.json#coverage -->80/80\n")
    problems = rf.check(readme)
    assert len(problems) == 1 and "opening markers" in problems[0]


def test_no_markers_pass(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Nothing marked\n\ntorchvision 80/80\n")
    assert rf.check(readme) == []
    assert rf.write(readme) == 0


def test_command_line_exit_status(project: Path) -> None:
    readme = project / "README.md"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args, "--readme", str(readme)],
                              capture_output=True, text=True, timeout=120)

    assert run("--check").returncode == 0
    readme.write_text(README.replace("-->80/80<!--", "-->81/80<!--"))
    failed = run("--check")
    assert failed.returncode == 1 and "'81/80'" in failed.stderr
    assert run("--write").returncode == 0
    assert run().returncode == 0 and readme.read_text() == README


QUALITY = {"backbones": {
    "cnn": {"methods": {"T-TAME": {"ad_15": 3.97, "ic_15": 51.73, "std": {"ad_15": 0.19, "ic_15": 1.47}},
                        "RISE": {"ad_15": 19.28, "ic_15": 33.67, "std": {"ad_15": 0.89, "ic_15": 0.46}}},
            "first": {"ad_15": {"first": "T-TAME", "tied_best": ["T-TAME"]},
                      "ic_15": {"first": None, "tied_best": ["T-TAME"]}}},
    "vit": {"methods": {"T-TAME": {"ad_15": 13.43, "ic_15": 31.87, "std": {"ad_15": 1.04, "ic_15": 4.51}},
                        "LeGrad": {"ad_15": 59.77, "ic_15": 3.2, "std": {"ad_15": 0.8, "ic_15": 1.11}}},
            "first": {}}}}
QUALITY_TABLE = """| method | CNN AD 15% ↓ | CNN IC 15% ↑ | ViT AD 15% ↓ | ViT IC 15% ↑ |
|---|---:|---:|---:|---:|
| T-TAME | **4.0 ± 0.2** | *51.7 ± 1.5* | 13.4 ± 1.0 | 31.9 ± 4.5 |
| RISE | 19.3 ± 0.9 | 33.7 ± 0.5 | – | – |
| LeGrad | – | – | 59.8 ± 0.8 | 3.2 ± 1.1 |
"""
TABLE_README = f"""# Project

<!-- results-table: results/q.json#ad-ic -->
{QUALITY_TABLE}<!-- /results-table -->

torchvision <!-- results: results/zoo.json#coverage.torchvision.fraction -->80/80<!-- /results -->
"""


@pytest.fixture()
def table_project(project: Path) -> Path:
    (project / "results" / "q.json").write_text(json.dumps(QUALITY))
    (project / "README.md").write_text(TABLE_README)
    return project


def test_a_generated_table_equals_its_builders_output(table_project: Path) -> None:
    figures = rf.find_figures(TABLE_README)
    assert [(f.file, f.path, f.table) for f in figures] == [
        ("results/q.json", "ad-ic", True), ("results/zoo.json", "coverage.torchvision.fraction", False)]
    assert rf.check(table_project / "README.md") == []


def test_a_table_cell_that_differs_fails_and_write_restores_it(table_project: Path) -> None:
    readme = table_project / "README.md"
    readme.write_text(TABLE_README.replace("19.3 ± 0.9", "19.2 ± 0.9"))
    problems = rf.check(readme)
    assert len(problems) == 1 and "results/q.json#ad-ic" in problems[0] and "line 3" in problems[0]
    assert rf.write(readme) == 1
    assert readme.read_text() == TABLE_README


def test_a_changed_result_changes_the_generated_table(table_project: Path) -> None:
    data = json.loads(json.dumps(QUALITY))
    data["backbones"]["vit"]["methods"]["T-TAME"]["ad_15"] = 12.0
    (table_project / "results" / "q.json").write_text(json.dumps(data))
    problems = rf.check(table_project / "README.md")
    assert len(problems) == 1 and "12.0 ± 1.0" in problems[0]


@pytest.mark.parametrize("bad, message", [
    ("results/q.json#no-such-table", "no table builder 'no-such-table'"),
    ("results/missing.json#ad-ic", "does not exist"),
    ("results/quality.md#ad-ic", "reads a results .json"),
])
def test_a_table_whose_source_cannot_build_it_fails(table_project: Path, bad: str, message: str) -> None:
    readme = table_project / "README.md"
    readme.write_text(TABLE_README.replace("results/q.json#ad-ic", bad))
    problems = rf.check(readme)
    assert len(problems) == 1 and message in problems[0], problems


def test_an_unclosed_table_marker_fails(table_project: Path) -> None:
    readme = table_project / "README.md"
    readme.write_text(TABLE_README + "\n<!-- results-table: results/q.json#ad-ic -->\n| a |\n")
    problems = rf.check(readme)
    assert len(problems) == 1 and "opening table markers" in problems[0]


def test_the_speed_and_coverage_builders() -> None:
    speed = {"ratios": {"resnet50": {"fp32": {"attribute/forward": 1.1653, "fit step/floor": 1.2283}},
                        "swin_t": {"fp32": {"attribute/forward": 0.9717}}}}
    assert rf.table_speed(speed).splitlines()[:4] == [
        "| ratio (A / B) | resnet50 | swin_t |", "|---|---:|---:|",
        "| attribute/forward | 1.17 | 0.97 |", "| explain/forward |  |  |"]
    assert "| fit step/floor | 1.23 |  |" in rf.table_speed(speed)
    zoo = {"coverage": {"timm": {"fraction": "74/74", "excluded": 0},
                        "transformers": {"fraction": "39/39", "excluded": 7}}}
    assert rf.table_coverage(zoo).splitlines()[2:] == ["| timm | 74/74 | 0 |", "| transformers | 39/39 | 7 |"]
