"""Property-based fuzzing: random inputs get a correct result or a clear ValueError/TypeError.

A correct result has the documented shape, is finite and lies in the documented range. An error
must be a ``ValueError`` or ``TypeError`` whose message names the offending argument; any other
exception (a crash deep inside torch), a hang or a wrongly shaped result fails the property.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TTAME  # noqa: E402
from ttame_attr.adapters import guess_layout, to_nchw  # noqa: E402
from ttame_attr.adapters._base import infer_token_grid  # noqa: E402

SIZE = setup.SIZE
K = setup.NUM_CLASSES
FUZZ = settings(max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8,
          torch.bool, torch.complex64]


def _explainers() -> dict[str, TTAME]:
    torch.manual_seed(0)
    cnn = TTAME(setup.TinyCNN(), ["stage1", "stage2", "stage3"], input_size=(3, SIZE, SIZE))
    vit = torchvision.models.VisionTransformer(
        image_size=SIZE, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
        num_classes=K,
    )
    return {"cnn": cnn, "vit": TTAME(vit)}


EXPLAINERS = _explainers()


def _clear(err: BaseException, names: tuple[str, ...]) -> None:
    """A clear error: ValueError/TypeError whose message names one of ``names``."""
    assert isinstance(err, (ValueError, TypeError)), f"{type(err).__name__}: {err}"
    event(f"clear {type(err).__name__}")
    message = str(err)
    assert any(name in message for name in names), message


@st.composite
def images(draw, wild: bool = True):
    """Tensors of random rank, shape, dtype and device (cpu or meta), or non-tensors.

    With ``wild=False``: valid ``(N, 3, H, W)`` floating-point CPU batches of any size.
    """
    kind = draw(st.sampled_from(["tensor"] * 8 + ["tuple", "tuple2", "list", "numpy", "none"]
                                if wild else ["tensor"] * 4 + ["tuple"]))
    if kind == "list":
        return [[0.0] * 4] * 3
    if kind == "none":
        return None
    rank = draw(st.sampled_from([4] * 6 + [0, 1, 2, 3, 5])) if wild else 4
    sizes = [SIZE, SIZE, SIZE, 1, 2, 5, 17, 32]
    if rank == 4:
        shape = (draw(st.integers(0 if wild else 1, 3)),
                 draw(st.sampled_from([3, 3, 3, 1, 4])) if wild else 3,
                 draw(st.sampled_from(sizes)), draw(st.sampled_from(sizes[:-1] + [31])))
    else:
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=rank, max_size=rank)))
    dtypes = DTYPES if wild else DTYPES[:4]
    dtype = draw(st.sampled_from(dtypes[:1] * 6 + dtypes[1:]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    if wild and draw(st.integers(0, 9)) == 0:
        x = x.to("meta")
    if kind == "numpy":
        return x.numpy() if x.device.type == "cpu" and dtype not in (torch.bfloat16,) else x
    if kind == "tuple":
        return (x,)
    if kind == "tuple2":
        return (x, x)
    return x


@st.composite
def targets(draw, n: int, wild: bool = True):
    """Targets of every accepted form, and (``wild``) of wrong types, lengths and values."""
    valid_kinds = ["none", "int", "tuple", "list", "listlist", "numpy", "tensor", "tensor"]
    kind = draw(st.sampled_from(
        valid_kinds + ["bool", "float", "str", "listfloat", "meta"] if wild else valid_kinds))
    cls = st.integers(-2, K + 1) if wild else st.integers(0, K - 1)
    if kind == "none":
        return None
    if kind == "int":
        return draw(cls)
    if kind == "bool":
        return True
    if kind == "float":
        return draw(st.sampled_from([1.0, 2.5]))
    if kind == "str":
        return "cat"
    if kind == "tuple":
        return tuple(draw(st.lists(cls, min_size=0 if wild else 1, max_size=2 if wild else 1)))
    if kind == "list":
        return draw(st.lists(cls, min_size=max(n - 1, 0) if wild else n,
                             max_size=n + 1 if wild else n))
    if kind == "listlist":
        k = draw(st.integers(0 if wild else 1, 3))
        rows = draw(st.integers(max(n - 1, 0), n + 1)) if wild else n
        return [draw(st.lists(cls, min_size=k, max_size=k + draw(st.integers(0, int(wild)))))
                for _ in range(rows)]
    if kind == "listfloat":
        return [draw(st.sampled_from([0.0, 1.5, 2.0, True])) for _ in range(n)]
    if kind == "numpy":
        return np.int64(draw(st.integers(0, K - 1)))
    if wild:
        rank = draw(st.integers(0, 3))
        shape = tuple(draw(st.sampled_from([0, 1, n, n, 2, 3])) for _ in range(rank))
        dtype = draw(st.sampled_from([torch.int64, torch.int64, torch.int32, torch.uint8,
                                      torch.float32, torch.bool]))
        t = torch.randint(-1, K + 1, shape).to(dtype)
    else:
        shape = draw(st.sampled_from([(), (1,), (n,), (n, draw(st.integers(1, 4)))]))
        t = torch.randint(0, K, shape, dtype=draw(st.sampled_from([torch.int64, torch.int32])))
    return t.to("meta") if kind == "meta" else t


def _expected_k(target, n: int) -> int:
    if isinstance(target, torch.Tensor) and target.dim() == 2:
        return target.shape[1]
    if isinstance(target, list) and target and isinstance(target[0], list):
        return len(target[0])
    return 1


@pytest.mark.parametrize("name", ["cnn", "vit"])
@settings(FUZZ, max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "100")))
@given(data=st.data())
def test_attribute_fuzz(name, data):
    explainer = EXPLAINERS[name]
    # Each example has at most one wild argument, so that valid calls are common too.
    wild = data.draw(st.sampled_from(["none", "inputs", "target", "scale", "upsample", "mode"]))
    event(f"wild {wild}")
    inputs = data.draw(images(wild=wild == "inputs"), label="inputs")
    x = inputs[0] if isinstance(inputs, tuple) and inputs else inputs
    n = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() >= 1 else 2
    target = data.draw(targets(n, wild=wild == "target"), label="target")
    scale = data.draw(st.sampled_from(
        ["sigmoid", "raw", "minmax"] + (["softmax", "", None, 1] if wild == "scale" else [])))
    upsample = data.draw(st.sampled_from(
        [True, True, False, (SIZE, SIZE), (7, 5), [3, 40]]
        + ([(0, 4), (-1, 3), (2,), 5, "yes", (2.5, 3), (True, 2), None]
           if wild == "upsample" else [])))
    mode = data.draw(st.sampled_from(
        ["bilinear", "nearest", "area", "bicubic"]
        + (["linear", "trilinear", None] if wild == "mode" else [])))
    try:
        out = explainer.attribute(inputs, target=target, scale=scale, upsample=upsample,
                                  interpolate_mode=mode)
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions
        _clear(err, ("inputs", "target", "scale", "upsample", "interpolate_mode"))
        # Valid calls must not be refused (the ViT takes only its own image size).
        assert wild != "none" or (name == "vit" and tuple(x.shape[-2:]) != (SIZE, SIZE)), err
        return
    event("result")
    assert isinstance(x, torch.Tensor) and x.dim() == 4
    if isinstance(inputs, tuple):
        assert isinstance(out, tuple) and len(out) == 1
        out = out[0]
    h, w = (tuple(x.shape[-2:]) if upsample is True else
            explainer.map_size if upsample is False else tuple(upsample))
    if name == "vit":
        assert tuple(x.shape[-2:]) == (SIZE, SIZE)  # other sizes must have been refused
    assert tuple(out.shape) == (x.shape[0], _expected_k(target, x.shape[0]), h, w)
    assert out.is_floating_point() and out.device == explainer.device
    assert torch.isfinite(out).all()
    if scale != "raw":
        assert out.min() >= 0 and out.max() <= 1


@settings(FUZZ, max_examples=int(os.environ.get("TTAME_FUZZ_EXAMPLES", "60")))
@given(data=st.data())
def test_explain_and_class_maps_fuzz(data):
    explainer = EXPLAINERS["cnn"]
    wild = data.draw(st.sampled_from(["none", "inputs", "top_k"]))
    inputs = data.draw(images(wild=wild == "inputs"), label="inputs")
    inputs = inputs[0] if isinstance(inputs, tuple) and len(inputs) == 1 else inputs
    top_k = data.draw(st.sampled_from(
        [1, 2, K] + ([0, -1, K + 1, 2.0, True] if wild == "top_k" else [])))  # None: the default, 1
    try:
        result = explainer.explain(inputs, top_k=top_k)
    except Exception as err:  # noqa: BLE001
        _clear(err, ("inputs", "top_k"))
        assert wild != "none", err
        return
    n = inputs.shape[0]
    assert tuple(result.maps.shape) == (n, top_k, *inputs.shape[-2:])
    assert tuple(result.classes.shape) == tuple(result.probabilities.shape) == (n, top_k)
    assert tuple(result.logits.shape) == (n, K)
    assert torch.isfinite(result.maps).all() and result.maps.min() >= 0 and result.maps.max() <= 1
    assert (result.probabilities[:, :-1] >= result.probabilities[:, 1:]).all()
    maps = explainer.class_maps(inputs)
    assert tuple(maps.shape) == (n, K, *explainer.map_size) and torch.isfinite(maps).all()


def _refused(call, error: type[Exception], argument: str, what: str) -> None:
    """``call()`` raises exactly ``error`` with a message that starts with ``argument:``."""
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{what}: {info.value!r}"
    assert str(info.value).startswith(f"{argument}:"), f"{what}: {info.value}"


#: Every way of getting ``input_hw`` wrong (the (H, W) of an image: two positive ints).
BAD_HW = [(0, 5), (5, -1), (0, 0), (5,), (5, 5, 5), (5.0, 5), (True, 5), "55", None]


@st.composite
def good_hw(draw):
    hw = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    return list(hw) if draw(st.booleans()) else hw


@FUZZ
@given(data=st.data(), layout=st.sampled_from(["nchw", "nhwc", "tokens"]))
def test_to_nchw_fuzz(data, layout):
    dims = st.integers(0, 5)
    if layout == "tokens":
        n, c = data.draw(dims, label="n"), data.draw(dims, label="c")
        h, w = data.draw(st.integers(1, 4), label="h"), data.draw(st.integers(1, 4), label="w")
        prefix = data.draw(st.integers(0, 3), label="prefix")
        feature = torch.randn(n, prefix + h * w, c)
        grid = (h, w)
    else:
        feature = torch.randn(tuple(data.draw(st.lists(dims, min_size=4, max_size=4))))
        grid = data.draw(st.one_of(st.none(), st.tuples(st.integers(-1, 4), st.integers(-1, 4))),
                         label="grid (ignored)")
    out = to_nchw(feature, layout, grid)
    if feature.numel():  # a view of the feature, not a copy
        assert out.untyped_storage().data_ptr() == feature.untyped_storage().data_ptr()
    if layout == "nchw":
        assert out.shape == feature.shape and torch.equal(out, feature)
    elif layout == "nhwc":
        n, fh, fw, c = feature.shape
        assert tuple(out.shape) == (n, c, fh, fw)
        assert torch.equal(out, torch.einsum("nhwc->nchw", feature))
    else:
        expected = torch.empty(n, c, h, w)
        for i in range(h):  # the last h * w tokens, row by row
            for j in range(w):
                expected[:, :, i, j] = feature[:, prefix + i * w + j, :]
        assert tuple(out.shape) == (n, c, h, w) and torch.equal(out, expected)
    # Each argument broken in each known way, the others valid.
    for bad in ["NCHW", "chw", "", "token", None]:
        _refused(lambda bad=bad: to_nchw(feature, bad, grid), ValueError, "layout", f"layout {bad!r}")
    for rank in ([2, 4] if layout == "tokens" else [3, 5]):
        wrong = torch.zeros((2,) * rank)
        _refused(lambda wrong=wrong: to_nchw(wrong, layout, grid), ValueError, "feature",
                 f"rank {rank}")
    if layout == "tokens":
        length = feature.shape[1]
        # (A grid of the wrong length is left out: test_to_nchw_names_grid_of_wrong_length.)
        for bad in [None, (0, w), (h, -1), (length + 1, 1), (1, length + 1), (2.0, 2)]:
            _refused(lambda bad=bad: to_nchw(feature, layout, bad), ValueError, "grid",
                     f"grid {bad!r}")


def test_to_nchw_names_grid_of_wrong_length():
    for bad in [(2,), (1, 2, 2)]:
        _refused(lambda bad=bad: to_nchw(torch.zeros(1, 4, 2), "tokens", bad), ValueError, "grid",
                 f"grid {bad!r}")


def _layout_oracle(shape, input_hw, prefer):
    """guess_layout's documented rule in exact arithmetic: a reading (h, w) fits when
    0 < h <= H, 0 < w <= W, h * w > 1 and its aspect ratio is within a factor 1.5 of the
    input's; the closer one wins. Returns the set of acceptable answers."""
    if len(shape) != 4:
        return {None}
    _, a, b, c = shape
    big_h, big_w = input_hw
    deviation = {}
    for layout, (h, w) in (("nchw", (b, c)), ("nhwc", (a, b))):
        if 0 < h <= big_h and 0 < w <= big_w and h * w > 1:
            ratio = Fraction(h * big_w, w * big_h)
            if max(ratio, 1 / ratio) < Fraction(3, 2):
                deviation[layout] = max(ratio, 1 / ratio)
    if not deviation:
        return {None}
    if len(deviation) == 2 and deviation["nchw"] == deviation["nhwc"]:
        # Documented: ``prefer`` breaks the tie (also for readings that are each other's
        # reciprocal, e.g. (N, 3, 4, 3) on a square input:
        # test_guess_layout_prefer_breaks_reciprocal_ties).
        return {prefer}
    return {min(deviation, key=deviation.get)}


@FUZZ
@given(
    shape=st.lists(st.integers(-1, 60), min_size=0, max_size=5).map(tuple),
    input_hw=good_hw(),
    prefer=st.sampled_from(["nchw", "nhwc"]),
)
def test_guess_layout_fuzz(shape, input_hw, prefer):
    layout = guess_layout(shape, input_hw, prefer)
    assert layout in _layout_oracle(shape, tuple(input_hw), prefer), (shape, input_hw, prefer)
    for bad in BAD_HW:
        _refused(lambda bad=bad: guess_layout(shape, bad, prefer), ValueError, "input_hw",
                 repr(bad))
    for bad in ["tokens", "NCHW", "", None]:
        _refused(lambda bad=bad: guess_layout(shape, input_hw, bad), ValueError, "prefer",
                 repr(bad))


def test_guess_layout_prefer_breaks_reciprocal_ties():
    # (N, 3, 4, 3) on a square input reads as 4x3 (nchw) or 3x4 (nhwc): equally far from square.
    assert guess_layout((1, 3, 4, 3), (16, 16), "nhwc") == "nhwc"
    assert guess_layout((1, 4, 3, 4), (16, 16), "nchw") == "nchw"


def _grid_oracle(length: int, input_hw: tuple[int, int], max_prefix: int = 8):
    """The smallest prefix whose remaining tokens form an exact (h, w) grid with the image's
    aspect ratio, by trying every divisor (not the square root the function uses)."""
    big_h, big_w = input_hw
    for prefix in range(max_prefix + 1):
        n = length - prefix
        if n <= 0:
            return None
        for h in range(1, n + 1):
            if n % h == 0 and h * big_w == (n // h) * big_h:
                return prefix, (h, n // h)
    return None


@FUZZ
@given(length=st.integers(-2, 400), input_hw=good_hw())
def test_infer_token_grid_fuzz(length, input_hw):
    assert infer_token_grid(length, input_hw) == _grid_oracle(length, tuple(input_hw))
    for bad in BAD_HW:
        _refused(lambda bad=bad: infer_token_grid(length, bad), ValueError, "input_hw", repr(bad))


def test_hypothesis_runs_are_deterministic():
    """tests/conftest.py's profile: the same examples on every run, no example database."""
    for active in (settings.default, FUZZ):
        assert active.derandomize is True and active.database is None


def test_meta_model_is_refused_clearly():
    model = setup.TinyCNN().to("meta")
    with pytest.raises((ValueError, TypeError), match="model"):
        TTAME(model, ["stage1", "stage2", "stage3"], input_size=(3, SIZE, SIZE))
