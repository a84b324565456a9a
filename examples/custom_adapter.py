"""A custom backbone adapter: teach T-TAME where a new architecture keeps its feature maps.

``ToyTokenNet`` below is a made-up model whose stages return tokens ``(N, L, C)`` with no class
token and no ``patch_embed`` attribute, so no built-in adapter understands it. A small
:class:`~ttame_attr.BackboneAdapter` subclass says which layers to read, that they hold tokens,
and on which grid; registering it makes it selectable by name and automatically.

    python examples/custom_adapter.py
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ttame_attr import TTAME, BackboneAdapter, register_adapter
from ttame_attr.adapters import unregister_adapter


class ToyTokenNet(nn.Module):
    """Patchify (stride ``patch``), then token-mixing stages that keep ``(N, L, C)``."""

    def __init__(self, num_classes: int = 4, dim: int = 16, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.stages = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
                                    for _ in range(3))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (N, L, C)
        for stage in self.stages:
            tokens = tokens + stage(tokens)
        return self.head(tokens.mean(dim=1))


@register_adapter("toy_tokens", priority=20)
class ToyTokenAdapter(BackboneAdapter):
    """Reads the three stages of a :class:`ToyTokenNet` as patch-grid maps."""

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return isinstance(model, ToyTokenNet)

    def default_layers(self, input_size: tuple[int, int, int]) -> list[str]:
        return ["stages.0", "stages.1", "stages.2"]

    def layout(self, name: str, output: Tensor, input_hw: tuple[int, int]) -> str:
        return "tokens"

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        p = self.model.patch
        return (input_hw[0] // p, input_hw[1] // p)


def main() -> None:
    torch.manual_seed(0)
    model = ToyTokenNet().eval()
    try:
        explainer = TTAME(model, input_size=(3, 32, 32))  # picks "toy_tokens" automatically
        print(explainer)
        print([(i.name, i.layout, (i.channels, i.height, i.width)) for i in explainer.layer_info])
        data = [torch.rand(8, 3, 32, 32) for _ in range(2)]
        explainer.fit(data, epochs=1, progress=False)
        print("maps", tuple(explainer.attribute(torch.rand(2, 3, 32, 32)).shape))
    finally:
        unregister_adapter("toy_tokens")  # keep the registry clean when run inside tests


if __name__ == "__main__":
    main()
