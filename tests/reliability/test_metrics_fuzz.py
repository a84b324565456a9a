"""Property-based fuzzing of the metrics: a correct result or a clear ValueError/TypeError.

Random shapes, dtypes, targets and options are thrown at every metric. A correct result has
finite values in the documented range; an error must be a ValueError or TypeError (never a crash
deep inside torch or a silently wrong shape).
"""

from __future__ import annotations

import math
import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from ttame_attr.metrics import (
    average_drop_increase,
    deletion,
    energy_pointing_game,
    insertion,
    pointing_game,
    road,
)

FUZZ = settings(max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
K = 4
DTYPES = [torch.float32, torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]


class MeanModel(nn.Module):
    """Logits are a fixed linear function of the per-channel means: cheap and deterministic."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float().mean(dim=(2, 3)))


MODEL = MeanModel().eval()


def _tensor(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=g) if all(s >= 0 for s in shape) else None
    return values if values is None else values.to(dtype)


shapes = st.lists(st.integers(0, 9), min_size=1, max_size=5).map(tuple)
# Mostly well-formed (N, 3, H, W) images, sometimes anything.
image_shapes = st.one_of(
    st.tuples(st.integers(1, 3), st.just(3), st.integers(2, 9), st.integers(2, 9)),
    st.tuples(st.integers(1, 3), st.just(3), st.integers(2, 9), st.integers(2, 9)),
    shapes,
)


@st.composite
def map_shapes(draw, in_shape):
    """Maps that fit the images in any accepted layout, or arbitrary shapes."""
    n = in_shape[0] if in_shape else 1
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    return draw(st.sampled_from([(n, 1, h, w), (n, h, w), (n, 3, h, w), (n + 1, 1, h, w)])
                if draw(st.integers(0, 3)) else shapes)
targets = st.one_of(
    st.none(), st.none(), st.integers(0, K - 1), st.integers(-2, K + 1),
    st.lists(st.integers(-1, K), min_size=0, max_size=4),
    st.sampled_from(["cat", 1.5]),
)


def _check_error(err: Exception) -> None:
    assert isinstance(err, (ValueError, TypeError)), f"{type(err).__name__}: {err}"
    assert str(err), "errors must say what was wrong"


OUTCOMES: dict[str, int] = {}


def _count(name: str) -> None:
    OUTCOMES[name] = OUTCOMES.get(name, 0) + 1


def _finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


@FUZZ
@given(data=st.data(), in_shape=image_shapes, dtype=st.sampled_from(DTYPES), target=targets,
       fraction=st.sampled_from([1.0, 0.5, 0.15, 0.0, 1.5, -0.1]))
def test_average_drop_increase(data, in_shape, dtype, target, fraction) -> None:
    map_shape = data.draw(map_shapes(in_shape))
    inputs = _tensor(in_shape, torch.float32, 1)
    maps = _tensor(map_shape, dtype, 2)
    try:
        result = average_drop_increase(MODEL, inputs, maps, target=target, fractions=(fraction,))
    except Exception as err:  # noqa: BLE001 - the property is about the exception's type
        _check_error(err)
        return
    _count("ad_ic")
    n = inputs.shape[0]
    assert result.drop.shape == (n, 1)
    ad, ic = result.average_drop[fraction], result.increase_in_confidence[fraction]
    assert _finite([ad, ic]) and 0.0 <= ad <= 100.0 and 0.0 <= ic <= 100.0


@FUZZ
@given(data=st.data(), in_shape=image_shapes, dtype=st.sampled_from(DTYPES), target=targets,
       kind=st.sampled_from(["deletion", "insertion"]), steps=st.sampled_from([None, 0, 1, 4, -2]))
def test_deletion_insertion(data, in_shape, dtype, target, kind, steps) -> None:
    map_shape = data.draw(map_shapes(in_shape))
    inputs = _tensor(in_shape, torch.float32, 1)
    maps = _tensor(map_shape, dtype, 2)
    fn = deletion if kind == "deletion" else insertion
    try:
        result = fn(MODEL, inputs, maps, target=target, steps=steps)
    except Exception as err:  # noqa: BLE001
        _check_error(err)
        return
    _count(kind)
    assert result.aucs.shape == (inputs.shape[0],)
    assert math.isfinite(result.auc) and -1e-6 <= result.auc <= 1.0 + 1e-6


@settings(max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "25")), deadline=None,
          derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), in_shape=image_shapes, dtype=st.sampled_from(DTYPES), target=targets)
def test_road(data, in_shape, dtype, target) -> None:
    map_shape = data.draw(map_shapes(in_shape))
    inputs = _tensor(in_shape, torch.float32, 1)
    maps = _tensor(map_shape, dtype, 2)
    try:
        result = road(MODEL, inputs, maps, target=target, fractions=(0.2, 0.5), max_iter=200)
    except Exception as err:  # noqa: BLE001
        _check_error(err)
        return
    _count("road")
    curves = torch.cat([torch.as_tensor(result.morf_accuracy), torch.as_tensor(result.lerf_accuracy)])
    assert curves.shape == (4,)
    assert torch.isfinite(curves).all() and ((curves >= 0) & (curves <= 1)).all()


@FUZZ
@given(data=st.data(),
       mask_shape=image_shapes.map(lambda s: (s[0], 1, *s[2:]) if len(s) == 4 else s),
       dtype=st.sampled_from(DTYPES), mask_dtype=st.sampled_from(DTYPES),
       tolerance=st.sampled_from([0.0, 2.0, -1.0]))
def test_pointing_games(data, mask_shape, dtype, mask_dtype, tolerance) -> None:
    map_shape = data.draw(map_shapes(mask_shape))
    maps = _tensor(map_shape, dtype, 2)
    masks = _tensor(mask_shape, mask_dtype, 3)
    if masks is not None:
        masks = masks.float().round().to(mask_dtype)
    for fn, kwargs in ((pointing_game, {"tolerance": tolerance}), (energy_pointing_game, {})):
        try:
            result = fn(maps, masks, **kwargs)
        except Exception as err:  # noqa: BLE001
            _check_error(err)
            continue
        _count(fn.__name__)
        score = float(result.accuracy) if hasattr(result, "accuracy") else float(result.energy)
        assert math.isnan(score) or 0.0 <= score <= 1.0


def test_fuzzing_reached_valid_calls() -> None:
    """The properties above must have exercised real results, not only error paths."""
    for name in ("ad_ic", "deletion", "insertion", "road", "pointing_game",
                 "energy_pointing_game"):
        assert OUTCOMES.get(name, 0) > 0, (name, OUTCOMES)
