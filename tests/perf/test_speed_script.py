"""The measuring machinery of ``benchmarks/speed.py`` (not the speeds: no timing asserts; the
clock is replaced by a fake one where a count depends on durations)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("ttame_speed_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ttame_speed_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_interleaving_alternates_order_and_repeats_inner_calls(speed):
    calls: list[str] = []
    pair = speed.Pair("r", lambda: calls.append("a"), lambda: calls.append("b"))
    speed.run_interleaved([pair], reps=3, warmup=1, device=torch.device("cpu"))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert len(pair.times_a) == len(pair.times_b) == 3


def _fake_clock(speed, monkeypatch):
    """Replace the benchmark's clock by one that moves only when a timed call says so."""
    now = [0.0]
    monkeypatch.setitem(speed.CLOCK, "clock", lambda: now[0])

    def takes(seconds: float, counter: dict, key: str):
        def fn() -> None:
            counter[key] += 1
            now[0] += seconds
        return fn

    return takes


def test_inner_calls_chosen_from_min_sample(speed, monkeypatch):
    takes = _fake_clock(speed, monkeypatch)
    count = {"a": 0, "b": 0}
    # The slower side takes 1/32 s: a 1 s sample is round(1 / (1/32)) = 32 calls.
    pair = speed.Pair("r", takes(1 / 32, count, "a"), takes(1 / 128, count, "b"))
    speed.run_interleaved([pair], reps=2, warmup=0, device=torch.device("cpu"), min_sample=1.0)
    assert pair.inner == 32
    assert count["a"] == count["b"] == 1 + 2 * 32  # one calibration call, then 2 samples
    assert pair.times_a == pytest.approx([1 / 32] * 2) and pair.times_b == pytest.approx([1 / 128] * 2)
    assert pair.ratio() == pytest.approx(4.0)
    # Calls of 1/1024 s would need 1024 per sample: capped at 50.
    count = {"a": 0, "b": 0}
    pair = speed.Pair("r", takes(1 / 1024, count, "a"), takes(1 / 1024, count, "b"))
    speed.run_interleaved([pair], reps=2, warmup=0, device=torch.device("cpu"), min_sample=1.0)
    assert pair.inner == 50
    assert count["a"] == count["b"] == 1 + 2 * 50


def test_ratio_is_ratio_of_medians(speed):
    pair = speed.Pair("r", lambda: None, lambda: None, [1.0, 3.0, 2.0], [1.0, 1.0, 4.0])
    assert pair.ratio() == pytest.approx(2.0)
    assert pair.paired_spread() == (0.5, 3.0)


def test_cpu_peak_bytes_sees_a_known_allocation(speed):
    def fn() -> None:
        a = torch.empty(1_000_000, dtype=torch.float32)  # 4 MB
        b = torch.empty(500_000, dtype=torch.float32)  # 2 MB, both alive
        del a, b
        c = torch.empty(250_000, dtype=torch.float32)  # 1 MB after both freed
        del c

    peak = speed.peak_bytes(fn, torch.device("cpu"))
    assert 6_000_000 <= peak < 6_000_000 + 100_000


@pytest.mark.parametrize("layout", ["tokens", "nhwc"])
def test_grid_probe_sees_nchw_and_restores_layout(speed, layout):
    seen = {}
    inner = nn.Identity()
    probe = speed._GridProbe(inner, layout, (2, 3))
    probe.probe.register_forward_hook(lambda m, a, out: seen.update(grid=out.detach().clone()))
    x = torch.randn(4, 1 + 6, 5) if layout == "tokens" else torch.randn(4, 2, 3, 5)
    out = probe(x)
    torch.testing.assert_close(out, x)
    grid = seen["grid"]
    assert tuple(grid.shape) == (4, 5, 2, 3)
    # Element by element: grid[n, c, i, j] is token 1 + 3 i + j (after the prefix token) or
    # pixel (i, j), channel c.
    for n, c, i, j in [(0, 0, 0, 0), (1, 4, 0, 2), (2, 1, 1, 0), (3, 3, 1, 2), (0, 2, 1, 1)]:
        source = x[n, 1 + 3 * i + j, c] if layout == "tokens" else x[n, i, j, c]
        assert grid[n, c, i, j] == source, (n, c, i, j)
    # What the probe returns (Captum may replace it) is what the output is rebuilt from.
    probe.probe.register_forward_hook(lambda m, a, out: out * 2)
    doubled = probe(x)
    if layout == "tokens":
        torch.testing.assert_close(doubled[:, :1], x[:, :1])  # the prefix token untouched
        torch.testing.assert_close(doubled[:, 1:], 2 * x[:, 1:])
    else:
        torch.testing.assert_close(doubled, 2 * x)


def test_goal_lookup(speed):
    assert speed.goal_for("attribute/forward", "resnet50") == 1.20
    assert speed.goal_for("attribute/forward", "vit_b_16") == 1.08
    assert speed.goal_for("fit step/floor", "swin_t") == 1.15
    assert speed.goal_for("gradcam/forward", "resnet50") is None


def test_parse_args_defaults_and_choices(speed):
    args = speed.parse_args(["--models", "resnet50", "swin_t", "--quick", "--json", "x.json"])
    assert args.models == ["resnet50", "swin_t"] and args.quick and args.json == Path("x.json")
    with pytest.raises(SystemExit):
        speed.parse_args(["--models", "alexnet"])
