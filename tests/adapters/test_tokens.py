"""Layout conversions: tokens and channels-last tensors to NCHW, checked value by value."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import seed  # noqa: F401 (autouse)

from ttame_attr.adapters import guess_layout, to_nchw
from ttame_attr.adapters._base import infer_token_grid


def _position_tokens(prefix: int, h: int, w: int) -> torch.Tensor:
    """``(2, prefix + h * w, 3)`` tokens: patch token ``r * w + c`` holds ``(r, c, image)``.

    Prefix tokens hold -1 so that a conversion that keeps one shows up in the values.
    """
    batch = []
    for image in range(2):
        tokens = [[-1.0, -1.0, -1.0]] * prefix
        tokens += [[float(r), float(c), float(image)] for r in range(h) for c in range(w)]
        batch.append(tokens)
    return torch.tensor(batch)


@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_tokens_to_nchw_puts_every_patch_token_at_its_row_and_column(prefix: int) -> None:
    h, w = 3, 5  # non-square, so that a transposed grid cannot pass
    out = to_nchw(_position_tokens(prefix, h, w), "tokens", (h, w))
    assert out.shape == (2, 3, h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    for image in range(2):
        assert torch.equal(out[image, 0], rows)
        assert torch.equal(out[image, 1], cols)
        assert torch.equal(out[image, 2], torch.full((h, w), float(image)))


def test_nhwc_to_nchw_moves_channels_first_exactly() -> None:
    h, w, c = 2, 3, 4
    x = torch.arange(2 * h * w * c, dtype=torch.float32).reshape(2, h, w, c)
    out = to_nchw(x, "nhwc")
    assert out.shape == (2, c, h, w)
    for n in range(2):
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    assert out[n, ch, r, col] == x[n, r, col, ch]


def test_nchw_is_returned_unchanged() -> None:
    x = torch.randn(2, 4, 3, 5)
    assert to_nchw(x, "nchw") is x


def test_tokens_without_grid_raise() -> None:
    with pytest.raises(ValueError, match="grid"):
        to_nchw(torch.zeros(1, 17, 4), "tokens")


@pytest.mark.parametrize(
    ("length", "input_hw", "expected"),
    [
        (197, (224, 224), (1, (14, 14))),
        (198, (224, 224), (2, (14, 14))),
        (261, (224, 224), (5, (16, 16))),
        (24, (32, 48), (0, (4, 6))),
        (25, (48, 32), (1, (6, 4))),
    ],
)
def test_infer_token_grid_reads_prefix_and_grid(length, input_hw, expected) -> None:
    assert infer_token_grid(length, input_hw) == expected


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((2, 64, 28, 28), "nchw"),
        ((2, 28, 28, 96), "nhwc"),
        ((2, 7, 7, 7), "nchw"),  # ambiguous: the preference decides
        ((2, 10, 3), None),
        ((2, 1000, 1, 1), None),
    ],
)
def test_guess_layout(shape, expected) -> None:
    assert guess_layout(shape, (224, 224)) == expected


def test_guess_layout_preference_breaks_ties() -> None:
    assert guess_layout((2, 7, 7, 7), (224, 224), prefer="nhwc") == "nhwc"
