"""The measuring machinery of ``benchmarks/speed.py`` (not the speeds: no timing asserts)."""

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


def test_inner_calls_chosen_from_min_sample(speed):
    count = {"a": 0, "b": 0}
    pair = speed.Pair("r", lambda: count.__setitem__("a", count["a"] + 1),
                      lambda: count.__setitem__("b", count["b"] + 1))
    speed.run_interleaved([pair], reps=2, warmup=0, device=torch.device("cpu"), min_sample=1.0)
    assert pair.inner == 50  # capped: each call takes far less than the sample
    assert count["a"] == count["b"] == 1 + 2 * 50  # one calibration call, then 2 samples


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
    probe.probe.register_forward_hook(lambda m, a, out: seen.update(shape=out.shape))
    x = torch.randn(4, 1 + 6, 5) if layout == "tokens" else torch.randn(4, 2, 3, 5)
    out = probe(x)
    torch.testing.assert_close(out, x)
    assert tuple(seen["shape"]) == (4, 5, 2, 3)
    if layout == "tokens":
        torch.testing.assert_close(
            probe.probe(x[:, 1:].reshape(4, 2, 3, 5).permute(0, 3, 1, 2)),
            x[:, 1:].reshape(4, 2, 3, 5).permute(0, 3, 1, 2),
        )


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
