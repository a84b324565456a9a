"""Parts of ``benchmarks/quality.py``: cache keys and entries, interleaved timing, the spread over
seeds and the "first" rule, and the run record every benchmark writes."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _results  # noqa: E402
from _quality import cache as C  # noqa: E402
from _quality import evaluation as E  # noqa: E402
from _quality import methods as M  # noqa: E402
from _quality.aggregate import aggregate_method, first_claims  # noqa: E402
from _quality.models import TTAMEConfig, head_key  # noqa: E402
from _quality.report import COLUMNS, metrics_table  # noqa: E402


# ------------------------------------------------------------------------------ cache entries
def test_an_entry_loads_only_under_its_own_key(tmp_path: Path) -> None:
    key = {**C.base_key("maps"), "method": "RISE", "seed": 0}
    path = tmp_path / "maps" / "entry.pt"
    C.save_entry(path, key, {"maps": torch.ones(2, 1, 4, 4), "seconds_per_image": 0.5})
    entry = C.load_entry(path, key)
    assert entry is not None and entry["seconds_per_image"] == 0.5
    torch.testing.assert_close(entry["maps"], torch.ones(2, 1, 4, 4))
    for change in ({"seed": 1}, {"format": C.CACHE_FORMAT + 1}, {"dtype": "bfloat16"},
                   {"versions": {**key["versions"], "torch": "0.0"}}):
        assert C.load_entry(path, {**key, **change}) is None, change  # stale: recomputed
    assert C.load_entry(tmp_path / "absent.pt", key) is None
    path.write_bytes(b"not a torch file")
    assert C.load_entry(path, key) is None
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_keys_hold_versions_dtype_format_and_sources() -> None:
    key = C.base_key("maps")
    assert key["format"] == C.CACHE_FORMAT and key["dtype"] == "float32"
    for name in ("torch", "captum", "grad-cam", "ttame_attr"):
        assert key["versions"][name] not in ("", None), name
    rise = M.RISE(torch.nn.Identity(), 8, n_masks=4, seed=0)
    a = C.maps_key(rise, M.method_sources(rise), "cnn", "model", "images", 0)
    assert a["source"] == C.source_digest(*M.method_sources(rise))
    assert M.RISE in M.method_sources(rise) and M.PytorchGradCAM not in M.method_sources(rise)
    for change in (dict(seed=1), dict(images="other"), dict(model="other"), dict(arch="vit")):
        args = {"arch": "cnn", "model": "model", "images": "images", "seed": 0, **change}
        b = C.maps_key(rise, M.method_sources(rise), **args)
        assert C.key_digest(a) != C.key_digest(b), change
    other = C.maps_key(rise, (M.CaptumIG,), "cnn", "model", "images", 0)  # other source code
    assert C.key_digest(a) != C.key_digest(other)


def test_source_and_tensor_digests_see_changes() -> None:
    def f() -> int:
        return 1

    def g() -> int:
        return 2

    assert C.source_digest(f) != C.source_digest(g)
    assert len(C.package_digest()) == 64
    x = torch.zeros(2, 3)
    assert C.tensor_digest(x) != C.tensor_digest(x.double())
    assert C.tensor_digest(x) != C.tensor_digest(x.view(3, 2))
    y = x.clone()
    y[1, 2] = 1e-7
    assert C.tensor_digest(x) != C.tensor_digest(y)


def test_head_key_holds_the_package_source_and_the_seed() -> None:
    cfg = TTAMEConfig(n_train=64, epochs=1)
    key = head_key(cfg, "cnn", "weights", 32)
    assert key["package_source"] == C.package_digest() and key["kind"] == "ttame-head"
    assert key["config"]["seed"] == 0
    other = head_key(dataclasses.replace(cfg, seed=1), "cnn", "weights", 32)
    assert C.key_digest(key) != C.key_digest(other)


# ------------------------------------------------------------------------------ timing
class _Recorder(M.Explainer):
    def __init__(self, name: str, calls: list, batch_size: int = 50) -> None:
        self.name, self.calls, self.batch_size = name, calls, batch_size

    def explain(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.name, images.shape[0]))
        return images[:, :1] * 0 + target.view(-1, 1, 1, 1).float()


def test_methods_are_timed_interleaved_in_rotating_order() -> None:
    calls: list = []
    methods = [_Recorder("a", calls), _Recorder("b", calls, batch_size=3), _Recorder("c", calls)]
    n = 12
    evalset = E.EvalSet(torch.rand(n, 3, 4, 4), torch.zeros(n), torch.zeros(n, 1, 4, 4),
                        torch.arange(n))
    out = E.compute_maps_interleaved(methods, evalset, chunk=4)
    assert calls[:3] == [("a", 1), ("b", 1), ("c", 1)]  # untimed warm-up on the first image
    order = [name for name, _ in calls[3:]]
    # chunk 0: a b(3+1) c; chunk 1: b(3+1) c a; chunk 2: c a b(3+1)
    assert order == ["a", "b", "b", "c", "b", "b", "c", "a", "c", "a", "b", "b"]
    for name, (maps, seconds) in out.items():
        assert maps.shape == (n, 1, 4, 4) and seconds >= 0.0, name
        torch.testing.assert_close(maps[:, 0, 0, 0], torch.arange(n).float())


# ------------------------------------------------------------------------------ spread, claims
def _method(values: dict[str, list[float]], timing: str = "interleaved") -> list[dict]:
    n = len(next(iter(values.values())))
    base = {key: 0.0 for key, _, _ in COLUMNS}
    return [{**base, **{k: v[i] for k, v in values.items()}, "seconds_per_image": 0.1,
             "road_morf_curve": [0.5, 0.5], "road_fractions": [0.1, 0.2],
             "metric_seconds": {"ad_ic": 1.0}, "timing": timing, "settings": {}} for i in range(n)]


def _pieces(per_method: dict[str, dict[str, list[float]]]) -> list[dict]:
    runs = {name: _method(values) for name, values in per_method.items()}
    n = len(next(iter(runs.values())))
    return [{"seed": s, "methods": {name: runs[name][s] for name in runs}} for s in range(n)]


@pytest.mark.parametrize("kind", ["Grad-CAM", "Grad-CAM++", "Score-CAM"])
def test_cam_hooks_live_only_during_their_own_call(kind: str) -> None:
    # pytorch-grad-cam's hooks store the target layer's output of every forward pass of the
    # model; registered between calls they hoarded the other methods' and the metrics' passes.
    torch.manual_seed(0)
    from ttame_attr.classifiers import build_classifier

    model = build_classifier("cnn", num_classes=3, image_size=32).eval()
    layer = model.layer4[-1]
    before = (dict(layer._forward_hooks), dict(model._forward_hooks))
    cam = M.PytorchGradCAM(kind, model, "cnn")
    maps = cam.explain(torch.rand(2, 3, 32, 32), torch.tensor([0, 2]))
    assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all()
    assert (dict(layer._forward_hooks), dict(model._forward_hooks)) == before


def test_mean_and_sample_std_over_seeds() -> None:
    pieces = _pieces({"A": {"ad_15": [1.0, 2.0, 4.0]}})
    agg = aggregate_method(pieces, "A")
    assert agg["ad_15"] == pytest.approx(7 / 3)
    assert agg["std"]["ad_15"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))  # n - 1
    assert agg["per_seed"]["2"]["ad_15"] == 4.0
    single = aggregate_method(pieces[:1], "A")
    assert single["ad_15"] == 1.0 and single["std"]["ad_15"] is None


def test_first_is_claimed_only_beyond_the_spread() -> None:
    # AD 15% (lower is better): A leads B by 1.0; stds 0.1 + 0.1 -> claimed.
    # IC 15% (higher is better): A leads B by 0.5; stds 1.0 + 1.0 -> best mean, not claimed.
    pieces = _pieces({
        "A": {"ad_15": [0.9, 1.0, 1.1], "ic_15": [9.0, 10.0, 11.0]},
        "B": {"ad_15": [1.9, 2.0, 2.1], "ic_15": [8.5, 9.5, 10.5]},
        "C": {"ad_15": [5.0, 5.0, 5.0], "ic_15": [0.0, 0.0, 0.0]},
    })
    methods = {name: aggregate_method(pieces, name) for name in "ABC"}
    claims = first_claims(methods, 3)
    assert claims["ad_15"]["first"] == "A" and claims["ad_15"]["claimed"]
    assert claims["ad_15"]["lead"] == pytest.approx(1.0)
    assert claims["ad_15"]["spread"] == pytest.approx(0.2)
    assert claims["ic_15"]["best"] == "A" and claims["ic_15"]["first"] is None
    assert claims["ic_15"]["spread"] == pytest.approx(2.0)
    # ties (every other column is 0.0 everywhere): no claim, all tied methods are best
    assert claims["ad_100"]["first"] is None and claims["ad_100"]["tied_best"] == ["A", "B", "C"]
    table = metrics_table({"methods": methods, "first": claims})
    row_a = next(line for line in table.splitlines() if line.startswith("| A |"))
    assert "**1.00 ± 0.10**" in row_a and "*10.00 ± 1.00*" in row_a
    # one seed: never a claim, however large the lead
    one = {name: aggregate_method(pieces[:1], name) for name in "ABC"}
    assert all(c["first"] is None for c in first_claims(one, 1).values())


def test_cached_timings_are_marked() -> None:
    runs = _method({"ad_15": [1.0]}, timing="map cache")
    methods = {"A": aggregate_method([{"seed": 0, "methods": {"A": runs[0]}}], "A")}
    table = metrics_table({"methods": methods, "first": first_claims(methods, 1)})
    assert table.splitlines()[-1].endswith("| 0.1000* |")


# ------------------------------------------------------------------------------ run record
def test_run_info_records_command_date_machine_versions_and_commit(tmp_path: Path) -> None:
    run = _results.run_info("quality.py", ["--quick", "--seeds", "0", "1"])
    assert run["command"] == "python benchmarks/quality.py --quick --seeds 0 1"
    assert run["date"].endswith("+00:00")
    assert {"platform", "cpu_count", "torch_threads"} <= set(run["machine"])
    for name in ("torch", "torchvision", "timm", "captum", "grad-cam", "transformers", "ttame_attr"):
        assert name in run["versions"], name
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        assert run["git"]["commit"] == head.stdout.strip()
        assert isinstance(run["git"]["dirty"], bool)
        assert not any(p.startswith("benchmarks/results/") for p in run["git"]["changed"])
    paths = _results.write_results(tmp_path / "r", "x", {"run": run}, "# x")
    assert [p.name for p in paths] == ["x.json", "x.md"]
    assert json.loads(paths[0].read_text())["run"]["command"] == run["command"]
    assert _results.default_out(False, "x") == _results.RESULTS_DIR
    assert _results.default_out(True, "x") != _results.RESULTS_DIR


def test_imputation_alternates_the_solver_order() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import imputation

    assert [imputation.solver_order(r) for r in range(4)] == [
        ("cg", "direct"), ("direct", "cg"), ("cg", "direct"), ("direct", "cg")]


# ------------------------------------------------------------------------------ shipped classifiers
def test_the_shipped_swin_classifier_loads_without_training(tmp_path: Path, monkeypatch) -> None:
    """The classifier behind budget.json's Swin rows is kept in benchmarks/classifiers/: an empty cache
    gets it, with the weights and accuracy its README lists. If this fails after a change to
    ttame_attr.classifiers or torch, the kept file no longer carries the cache key: retrain with
    ``benchmarks/train_classifiers.py``, rerun the results it is behind, and replace it."""
    from _quality.models import fingerprint, get_classifier

    import ttame_attr.classifiers._cache as cache

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train trained a classifier: the shipped one was not used")

    monkeypatch.setattr(cache, "_train_and_measure", no_training)
    model, info = get_classifier("swin", tmp_path / "cache", 64, False)
    assert info["cached"] is True
    assert (info["val_accuracy"], info["test_accuracy"]) == (0.9545, 0.9605)
    assert fingerprint(model) == "91038893eb73ac08"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "swin_64px_seed0_3ff06d866e.json", "swin_64px_seed0_3ff06d866e.pt"]
    budget = json.loads((ROOT / "benchmarks" / "results" / "budget.json").read_text())
    assert budget["backbones"]["swin"]["classifier"] == {"test_accuracy": 0.9605, "val_accuracy": 0.9545}


def test_ad_is_split_by_predicted_class_by_hand() -> None:
    # Drops 10, 30 for class 0, 90 for class 2, none predicted as class 1: class 1 is left out,
    # and the classes' AD weighted by their images is the mean drop (130 / 3).
    drop = torch.tensor([10.0, 90.0, 30.0])
    predicted = torch.tensor([0, 2, 0])
    split = E.ad_per_class(drop, predicted)
    names = E.CLASS_NAMES
    assert split == {names[0]: {"n": 2, "ad": 20.0}, names[2]: {"n": 1, "ad": 90.0}}
    assert sum(c["n"] * c["ad"] for c in split.values()) / 3 == pytest.approx(drop.mean().item())
