"""The adapter registry: lookup errors, duplicate names, automatic selection."""

from __future__ import annotations

import pytest
import torch
from adapter_helpers import seed  # noqa: F401 (autouse)
from torch import nn

from ttame_attr.adapters import (
    BackboneAdapter,
    CNNAdapter,
    get_adapter,
    list_adapters,
    register_adapter,
    resolve_adapter,
    unregister_adapter,
)


def test_builtin_adapters_are_registered_in_priority_order() -> None:
    names = list_adapters()
    assert {"cnn", "vit", "swin"} <= set(names)
    assert names[-1] == "cnn"  # the catch-all is tried last


def test_unknown_name_lists_the_valid_ones_and_suggests_the_closest() -> None:
    with pytest.raises(ValueError) as info:
        get_adapter("vitt")
    message = str(info.value)
    for name in ("'cnn'", "'vit'", "'swin'"):
        assert name in message
    assert "Did you mean 'vit'" in message


def test_duplicate_registration_raises_and_keeps_the_first() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_adapter("cnn")
        class Other(CNNAdapter):
            pass

    assert get_adapter("cnn") is CNNAdapter


def test_registering_a_non_adapter_raises_type_error() -> None:
    with pytest.raises(TypeError, match="BackboneAdapter"):
        register_adapter("not_an_adapter")(int)  # type: ignore[arg-type]
    assert "not_an_adapter" not in list_adapters()


def test_register_select_and_unregister_a_custom_adapter() -> None:
    class Marked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    @register_adapter("marked_test", priority=50)
    class MarkedAdapter(BackboneAdapter):
        @classmethod
        def matches(cls, model: nn.Module) -> bool:
            return isinstance(model, Marked)

        def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
            return ["conv"]

    try:
        assert MarkedAdapter.name == "marked_test"
        assert isinstance(resolve_adapter(Marked(), None), MarkedAdapter)
        assert isinstance(resolve_adapter(nn.Sequential(nn.Conv2d(3, 3, 1)), None), CNNAdapter)
    finally:
        unregister_adapter("marked_test")
    assert "marked_test" not in list_adapters()
    with pytest.raises(ValueError, match="unknown adapter"):
        unregister_adapter("marked_test")


def test_resolve_adapter_rejects_wrong_types_and_foreign_instances() -> None:
    model, other = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
    with pytest.raises(TypeError, match="adapter"):
        resolve_adapter(model, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="another model"):
        resolve_adapter(model, CNNAdapter(other))
    assert isinstance(resolve_adapter(model, "cnn"), CNNAdapter)
    assert isinstance(resolve_adapter(model, CNNAdapter), CNNAdapter)
