"""Property-based fuzzing of the metrics: valid calls succeed, invalid ones raise a clear error.

Every example draws well-formed arguments, and the call with them must succeed with a result of
the documented shapes, dtypes and ranges (a few values recomputed from the model directly). Then
each argument in turn is broken in each known way (the others kept well formed), and each such
call must raise that fault's error type with a message that starts with the argument's name. So
wrongly refusing valid input fails, as does accepting bad input, in every example and in each
test on its own.
"""

from __future__ import annotations

import math
import os

import pytest
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

# Each example makes one valid call and about 20 refused ones, so a few examples go a long way.
FUZZ = settings(max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "12")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
K = 4


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
    return torch.rand(shape, generator=g).to(dtype)


# ------------------------------------------------------------------------ argument strategies
# good_*: well-formed values. bad_*(kind, ...): a value broken in one known way, returned with
# the error it must raise: (value, (error type, argument name)).
@st.composite
def good_inputs(draw):
    shape = (draw(st.integers(1, 3)), 3, draw(st.integers(2, 9)), draw(st.integers(2, 9)))
    return _tensor(shape, draw(st.sampled_from([torch.float32, torch.float64])), 1)


INPUT_FAULTS = ["rank", "empty", "zero_size", "channels", "dtype", "type"]


@st.composite
def bad_inputs(draw, kind: str):
    if kind == "rank":
        rank = draw(st.sampled_from([0, 1, 2, 3, 5]))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
        return _tensor(shape, torch.float32, 1), (ValueError, "inputs")
    if kind == "empty":
        return _tensor((0, 3, 4, 4), torch.float32), (ValueError, "inputs")
    if kind == "zero_size":
        shape = [2, 3, 4, 4]
        shape[draw(st.integers(1, 3))] = 0
        return _tensor(tuple(shape), torch.float32), (ValueError, "inputs")
    if kind == "channels":  # the model takes 3 channels: its failure is reported as a ValueError
        shape = (2, draw(st.sampled_from([1, 2, 4])), 4, 4)
        return _tensor(shape, torch.float32), (ValueError, "inputs")
    if kind == "dtype":
        dtype = draw(st.sampled_from([torch.int64, torch.uint8, torch.bool]))
        return _tensor((2, 3, 4, 4), dtype), (TypeError, "inputs")
    assert kind == "type"
    return draw(st.sampled_from([[[0.5] * 4] * 3, "images", None])), (TypeError, "inputs")


@st.composite
def good_maps(draw, n: int):
    """Maps for ``n`` images in every accepted layout and any resolution."""
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = draw(st.sampled_from([(n, 1, h, w), (n, h, w), (n, 2, h, w), (n, 3, h, w)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]))
    return _tensor(shape, dtype, 2)


# "type" with images: a non-tensor, non-callable is a TypeError. The pointing games take no
# images, so there a callable (an explanation method) is refused with a ValueError ("explain"),
# and non-callable non-tensors are left out: see test_pointing_game_refuses_non_tensor_maps_...
MAP_FAULTS = ["rank", "batch", "dtype", "zero_size", "type"]


@st.composite
def bad_maps(draw, kind: str, n: int):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if kind == "rank":
        shape = draw(st.sampled_from([(n,), (n, h), (n, 1, 1, h, w)]))
        return _tensor(shape, torch.float32, 2), (ValueError, "maps")
    if kind == "batch":
        shape = (draw(st.sampled_from([0, n + 1])), 1, h, w)
        return _tensor(shape, torch.float32, 2), (ValueError, "maps")
    if kind == "dtype":
        dtype = draw(st.sampled_from([torch.bool, torch.complex64]))
        return _tensor((n, 1, h, w), dtype, 2), (TypeError, "maps")
    if kind == "zero_size":
        shape = draw(st.sampled_from([(n, 1, 0, w), (n, 1, h, 0), (n, 0, w)]))
        return _tensor(shape, torch.float32, 2), (ValueError, "maps")
    if kind == "explain":
        return (lambda x, t: x.mean(1)), (ValueError, "maps")
    assert kind == "type"
    return draw(st.sampled_from([[[0.5] * 4] * n, "maps", 3.0])), (TypeError, "maps")


@st.composite
def good_target(draw, n: int):
    """Targets of every accepted form."""
    cls = st.integers(0, K - 1)
    kind = draw(st.sampled_from(["none", "int", "list", "tuple", "tensor", "scalar"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(cls)
    values = draw(st.lists(cls, min_size=n, max_size=n))
    if kind == "list":
        return values
    if kind == "tuple":  # Captum's form: one class for every image
        return (values[0],)
    if kind == "tensor":
        return torch.tensor(values, dtype=draw(st.sampled_from([torch.int64, torch.int32])))
    return torch.tensor(values[0])


TARGET_FAULTS = ["int_range", "list_length", "list_range", "list_items", "tuple_length",
                 "tensor_shape", "tensor_range", "tensor_dtype", "type"]


@st.composite
def bad_target(draw, kind: str, n: int):
    cls = st.integers(0, K - 1)
    out_of_range = st.sampled_from([-2, -1, K, K + 1])
    if kind == "int_range":
        return draw(out_of_range), (ValueError, "target")
    if kind == "list_length":
        longer = n == 1 or draw(st.booleans())
        values = draw(st.lists(cls, min_size=n + 1, max_size=n + 2) if longer
                      else st.lists(cls, min_size=0, max_size=n - 1))
        return values, (ValueError, "target")
    if kind in ("list_range", "list_items"):
        values: list = draw(st.lists(cls, min_size=n, max_size=n))
        values[draw(st.integers(0, n - 1))] = draw(
            out_of_range if kind == "list_range" else st.sampled_from([1.0, True, "1"]))
        return values, (ValueError if kind == "list_range" else TypeError, "target")
    if kind == "tuple_length":
        return tuple(draw(st.lists(cls, min_size=2, max_size=3))), (ValueError, "target")
    if kind == "tensor_shape":
        shape = draw(st.sampled_from([(n + 1,), (n, 1), (1, n, 1)]))
        return torch.zeros(shape, dtype=torch.long), (ValueError, "target")
    if kind == "tensor_range":
        return torch.full((n,), draw(out_of_range), dtype=torch.long), (ValueError, "target")
    if kind == "tensor_dtype":
        dtype = draw(st.sampled_from([torch.float32, torch.bool]))
        return torch.zeros(n, dtype=dtype), (TypeError, "target")
    assert kind == "type"
    return draw(st.sampled_from([True, 1.5, "cat", {1: 2}])), (TypeError, "target")


@st.composite
def good_fractions(draw):
    values = draw(st.lists(st.sampled_from([1.0, 0.5, 0.15, 0.3]), min_size=1, max_size=3,
                           unique=True))
    return values[0] if len(values) == 1 and draw(st.booleans()) else tuple(values)


FRACTION_FAULTS = ["range", "empty", "type"]


@st.composite
def bad_fractions(draw, kind: str):
    if kind == "range":
        return (0.5, draw(st.sampled_from([0.0, 1.5, -0.1, 50.0]))), (ValueError, "fractions")
    if kind == "empty":
        return (), (ValueError, "fractions")
    assert kind == "type"
    return draw(st.sampled_from([None, ("half",), "abc"])), (TypeError, "fractions")


@st.composite
def good_masks(draw):
    """Ground-truth masks ``(N, H, W)`` or ``(N, 1, H, W)``, bool or 0/1 numbers."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = draw(st.sampled_from([(n, h, w), (n, 1, h, w)]))
    dtype = draw(st.sampled_from([torch.bool, torch.float32, torch.int64, torch.uint8]))
    seed = draw(st.integers(0, 2**16))
    masks = _tensor(shape, torch.float32, seed).round()
    masks.view(n, -1)[0, 0] = 1  # at least one mask is not empty (all empty is refused)
    return masks.to(dtype)


MASK_FAULTS = ["rank", "empty", "dtype", "type"]


@st.composite
def bad_masks(draw, kind: str, n: int):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if kind == "rank":
        shape = draw(st.sampled_from([(n, h), (n, 2, h, w), (n, 1, 1, h, w)]))
        return _tensor(shape, torch.float32, 3).round(), (ValueError, "masks")
    if kind == "empty":
        return torch.zeros(0, h, w, dtype=torch.bool), (ValueError, "masks")
    if kind == "dtype":
        return torch.zeros(n, h, w, dtype=torch.complex64), (TypeError, "masks")
    assert kind == "type"
    return draw(st.sampled_from([[[1, 0], [0, 1]], None, "mask"])), (TypeError, "masks")


def _expected_target(inputs: torch.Tensor, target) -> torch.Tensor:
    """The classes a valid call evaluates, worked out from the model directly."""
    n = inputs.shape[0]
    if target is None:
        with torch.no_grad():
            return MODEL(inputs).argmax(1)
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long)
    return torch.as_tensor(target, dtype=torch.long).expand(n)


def _clean_probs(inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return MODEL(inputs).float().softmax(1).gather(1, target.view(-1, 1)).squeeze(1)


def _refusals(data, call, good: dict, faults: dict) -> None:
    """Each argument in turn, broken in each known way (the others well formed): the call must
    raise that fault's error type, with a message that starts with the argument's name."""
    for argument, (kinds, strategy) in faults.items():
        for kind in kinds:
            value, (error, name) = data.draw(strategy(kind), label=f"{argument} {kind}")
            with pytest.raises(error) as info:
                call(**{**good, argument: value})
            assert type(info.value) is error, f"{argument} {kind}: {info.value!r}"
            assert str(info.value).startswith(f"{name}:"), f"{argument} {kind}: {info.value}"


# ------------------------------------------------------------------------ the properties
@FUZZ
@given(data=st.data())
def test_average_drop_increase(data) -> None:
    inputs = data.draw(good_inputs(), label="inputs")
    n = inputs.shape[0]
    good = {"inputs": inputs, "maps": data.draw(good_maps(n), label="maps"),
            "target": data.draw(good_target(n), label="target"),
            "fractions": data.draw(good_fractions(), label="fractions")}

    def call(inputs, maps, target, fractions):
        return average_drop_increase(MODEL, inputs, maps, target=target, fractions=fractions)

    result = call(**good)
    fractions = good["fractions"]
    fr = (fractions,) if isinstance(fractions, float) else fractions
    tgt = _expected_target(inputs, good["target"])
    assert result.fractions == fr and list(result.average_drop) == list(fr)
    assert torch.equal(result.target, tgt)
    torch.testing.assert_close(result.clean_probs, _clean_probs(inputs, tgt))
    assert result.masked_probs.shape == result.drop.shape == result.increase.shape == (n, len(fr))
    assert result.masked_probs.dtype == result.drop.dtype == torch.float32
    assert result.increase.dtype == torch.bool
    assert ((result.masked_probs >= 0) & (result.masked_probs <= 1)).all()
    assert ((result.drop >= 0) & (result.drop <= 100)).all()
    for j, f in enumerate(fr):
        assert result.average_drop[f] == pytest.approx(float(result.drop[:, j].mean()))
        ic = result.increase_in_confidence[f]
        assert ic == pytest.approx(100.0 * int(result.increase[:, j].sum()) / n)
    _refusals(data, call, good, {
        "inputs": (INPUT_FAULTS, bad_inputs),
        "maps": (MAP_FAULTS, lambda kind: bad_maps(kind, n)),
        "target": (TARGET_FAULTS, lambda kind: bad_target(kind, n)),
        "fractions": (FRACTION_FAULTS, bad_fractions),
    })


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["deletion", "insertion"]))
def test_deletion_insertion(data, kind) -> None:
    inputs = data.draw(good_inputs(), label="inputs")
    n = inputs.shape[0]
    good = {"inputs": inputs, "maps": data.draw(good_maps(n), label="maps"),
            "target": data.draw(good_target(n), label="target"),
            "steps": data.draw(st.sampled_from([None, 1, 3, 4]), label="steps")}
    fn = deletion if kind == "deletion" else insertion

    def call(inputs, maps, target, steps):
        return fn(MODEL, inputs, maps, target=target, steps=steps)

    result = call(**good)
    h, w = inputs.shape[-2:]
    points = (good["steps"] if good["steps"] is not None else min(h, h * w)) + 1
    tgt = _expected_target(inputs, good["target"])
    assert result.kind == kind and torch.equal(result.target, tgt)
    assert result.fractions.shape == (points,)
    assert float(result.fractions[0]) == 0.0 and float(result.fractions[-1]) == 1.0
    assert (result.fractions[1:] >= result.fractions[:-1]).all()
    assert result.curves.shape == (n, points) and result.curves.dtype == torch.float32
    assert ((result.curves >= 0) & (result.curves <= 1)).all()
    # Nothing deleted yet / everything inserted: the clean image's probability.
    clean_end = result.curves[:, 0] if kind == "deletion" else result.curves[:, -1]
    torch.testing.assert_close(clean_end, _clean_probs(inputs, tgt))
    assert result.aucs.shape == (n,)
    assert ((result.aucs >= -1e-6) & (result.aucs <= 1 + 1e-6)).all()
    assert result.auc == pytest.approx(float(result.aucs.mean()))
    steps_faults = {"zero": 0, "negative": -2, "float": 2.5, "bool": True}
    _refusals(data, call, good, {
        "inputs": (INPUT_FAULTS, bad_inputs),
        "maps": (MAP_FAULTS, lambda kind: bad_maps(kind, n)),
        "target": (TARGET_FAULTS, lambda kind: bad_target(kind, n)),
        "steps": (list(steps_faults), lambda k: st.just((steps_faults[k], (ValueError, "steps")))),
    })


@settings(FUZZ, max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "6")))
@given(data=st.data())
def test_road(data) -> None:
    inputs = data.draw(good_inputs(), label="inputs")
    n = inputs.shape[0]
    good = {"inputs": inputs, "maps": data.draw(good_maps(n), label="maps"),
            "target": data.draw(good_target(n), label="target"),
            "fractions": data.draw(good_fractions(), label="fractions"),
            "noise_std": data.draw(st.sampled_from([0.0, 0.01]), label="noise_std")}

    def call(inputs, maps, target, fractions, noise_std):
        return road(MODEL, inputs, maps, target=target, fractions=fractions, noise_std=noise_std,
                    max_iter=200, generator=torch.Generator().manual_seed(0))

    result = call(**good)
    fractions = good["fractions"]
    fr = (fractions,) if isinstance(fractions, float) else fractions
    p = len(fr)
    assert result.fractions == fr
    assert torch.equal(result.target, _expected_target(inputs, good["target"]))
    for curve, probs, top1, average in (
        (result.morf_accuracy, result.morf_probs, result.morf_top1, result.morf_average),
        (result.lerf_accuracy, result.lerf_probs, result.lerf_top1, result.lerf_average),
    ):
        assert curve.shape == (p,) and probs.shape == top1.shape == (n, p)
        assert ((probs >= 0) & (probs <= 1)).all()
        # accuracy: the share of images whose top-1 is still the target
        kept = (top1 == result.target.view(-1, 1)).float().mean(0)
        torch.testing.assert_close(curve.float(), kept)
        assert average == pytest.approx(float(curve.float().mean()))
    noise_faults = {"negative": -0.5, "string": "0.01", "none": None}
    _refusals(data, call, good, {
        "inputs": (INPUT_FAULTS, bad_inputs),
        "maps": (MAP_FAULTS, lambda kind: bad_maps(kind, n)),
        "target": (TARGET_FAULTS, lambda kind: bad_target(kind, n)),
        "fractions": (FRACTION_FAULTS, bad_fractions),
        "noise_std": (list(noise_faults),
                      lambda k: st.just((noise_faults[k], (ValueError, "noise_std")))),
    })


@settings(FUZZ, max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "30")))
@given(data=st.data(), game=st.sampled_from(["pointing_game", "energy_pointing_game"]))
def test_pointing_games(data, game) -> None:
    masks = data.draw(good_masks(), label="masks")
    n = masks.shape[0]
    good = {"maps": data.draw(good_maps(n), label="maps"), "masks": masks}
    if game == "pointing_game":
        good["tolerance"] = data.draw(st.sampled_from([0.0, 0, 1, 2.0]), label="tolerance")

    def call(maps, masks, tolerance=None):
        if game == "pointing_game":
            return pointing_game(maps, masks, tolerance=tolerance)
        return energy_pointing_game(maps, masks)

    result = call(**good)
    truth = (masks[:, 0] if masks.dim() == 4 else masks).float() > 0.5
    h, w = truth.shape[-2:]
    faults = {
        # maps and masks of different batch sizes: the masks are named (with both counts)
        "maps": ([k if k != "type" else "explain" for k in MAP_FAULTS],
                 lambda kind: bad_maps(kind, n).map(
                     lambda v: (v[0], (v[1][0], "masks")) if kind == "batch" else v)),
        "masks": (MASK_FAULTS, lambda kind: bad_masks(kind, n)),
    }
    if game == "energy_pointing_game":
        assert result.proportions.shape == (n,)
        assert ((result.proportions >= 0) & (result.proportions <= 1 + 1e-6)).all()
        assert result.energy == pytest.approx(float(result.proportions.mean()))
        _refusals(data, call, good, faults)
        return
    assert result.hits.shape == result.valid.shape == (n,) and result.hits.dtype == torch.bool
    assert torch.equal(result.valid, truth.flatten(1).any(1))
    assert result.points.shape == (n, 2)
    assert ((result.points[:, 0] >= 0) & (result.points[:, 0] < h)).all()
    assert ((result.points[:, 1] >= 0) & (result.points[:, 1] < w)).all()
    if good["tolerance"] == 0:  # a hit is exactly: the pointed pixel is in the mask
        on_mask = truth[torch.arange(n), result.points[:, 0], result.points[:, 1]]
        assert torch.equal(result.hits, on_mask)
    counted = result.valid.sum()
    if counted == 0:
        assert math.isnan(result.accuracy)
    else:
        assert result.accuracy == pytest.approx(float((result.hits & result.valid).sum() / counted))
    tolerance_faults = {"negative": -1.0, "bool": True, "string": "2", "none": None}
    faults["tolerance"] = (list(tolerance_faults),
                           lambda k: st.just((tolerance_faults[k], (ValueError, "tolerance"))))
    _refusals(data, call, good, faults)


# ------------------------------------------------------------------------ found bugs
# Found by the properties above (each failed before its fix).
def test_maps_without_channels_are_refused_with_value_error() -> None:
    with pytest.raises(ValueError, match="^maps:"):
        average_drop_increase(MODEL, _tensor((2, 3, 4, 4), torch.float32), torch.rand(2, 0, 4, 4))


def test_masks_without_pixels_are_refused_with_value_error() -> None:
    with pytest.raises(ValueError, match="^masks:"):
        pointing_game(torch.rand(2, 4, 4), torch.zeros(2, 0, 4, dtype=torch.bool))


def test_pointing_game_refuses_non_tensor_maps_with_type_error() -> None:
    with pytest.raises(TypeError, match="^maps:"):
        pointing_game([[0.5, 0.5], [0.5, 0.5]], torch.ones(1, 2, 2, dtype=torch.bool))
