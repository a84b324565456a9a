"""Smoke tests of the small classifiers and their training helpers (no full training here)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ttame_attr.classifiers import (
    ARCHITECTURES,
    SmallResNet,
    build_classifier,
    evaluate_accuracy,
    load_or_train,
    train_classifier,
)
from ttame_attr.classifiers import augment as _augment
from ttame_attr.data import SyntheticShapes, normalize

SIZE = 32


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_shape(arch: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(arch, num_classes=5, image_size=SIZE).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, SIZE, SIZE))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


def test_cnn_has_nchw_stages() -> None:
    model = build_classifier("cnn", image_size=64)
    assert isinstance(model, SmallResNet)
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in ("layer1", "layer2", "layer3", "layer4")
    ]
    try:
        model(torch.zeros(2, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert shapes == {
        "layer1": (2, 16, 32, 32),
        "layer2": (2, 32, 16, 16),
        "layer3": (2, 64, 8, 8),
        "layer4": (2, 128, 4, 4),
    }


def test_transformer_feature_layouts() -> None:
    vit = build_classifier("vit", image_size=64)
    swin = build_classifier("swin", image_size=64)
    seen = {}
    hooks = [
        vit.encoder.layers[-1].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("vit", tuple(out.shape))
        ),
        swin.layers[-1].register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("swin", tuple(out.shape))
        ),
    ]
    try:
        with torch.no_grad():
            vit.eval()(torch.zeros(1, 3, 64, 64))
            swin.eval()(torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert seen["vit"] == (1, 1 + 8 * 8, vit.hidden_dim)  # class token + 8x8 patch grid
    assert seen["swin"][:3] == (1, 4, 4)  # channels-last, 64 / 4 / 2 / 2


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_few_steps_decrease_loss(arch: str) -> None:
    torch.manual_seed(0)
    images, labels, _ = SyntheticShapes(16, image_size=SIZE, seed=0).generate(range(16))
    model = build_classifier(arch, num_classes=8, image_size=SIZE)
    loader = [(images, labels)]

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(normalize(images)), labels))

    before = loss()
    train_classifier(
        model,
        loader * 10,
        None,
        epochs=1,
        lr=3e-3,
        augment=False,
        label_smoothing=0.0,
        weight_decay=0.0,
    )
    assert loss() < before
    assert not model.training


def test_train_classifier_history_and_accuracy() -> None:
    torch.manual_seed(0)
    ds = SyntheticShapes(16, image_size=SIZE, seed=0, return_mask=False)
    loader = DataLoader(ds, batch_size=8)
    model = build_classifier("cnn", image_size=SIZE)
    history = train_classifier(model, loader, loader, epochs=2, lr=1e-3)
    assert len(history.train_loss) == len(history.val_accuracy) == 2
    assert history.seconds > 0
    assert history.val_accuracy[-1] == evaluate_accuracy(model, loader)
    assert set(history.to_dict()) == {"train_loss", "train_accuracy", "val_accuracy", "seconds"}


def test_evaluate_accuracy_known_answer() -> None:
    class Oracle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Predicts class 1 for every image.
            return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)

    images = torch.zeros(4, 3, 8, 8)
    labels = torch.tensor([1, 0, 1, 1])
    assert evaluate_accuracy(Oracle(), [(images, labels)]) == 0.75


def test_augment_is_a_flip_or_rotation() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = _augment(x, torch.Generator().manual_seed(0))
    for a, b in zip(x, out):
        candidates = [torch.rot90(v, k, dims=(-2, -1)) for v in (a, a.flip(-1)) for k in range(4)]
        assert any(torch.equal(b, c) for c in candidates)


def test_load_or_train_caches(tmp_path) -> None:
    kwargs = {"image_size": SIZE, "num_train": 16, "epochs": 1, "batch_size": 8, "num_eval": 8}
    model, info = load_or_train("cnn", tmp_path, **kwargs)
    assert not info["cached"] and 0.0 <= info["test_accuracy"] <= 1.0
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".pt"]
    assert json.loads((tmp_path / (info["path"][:-3].split("/")[-1] + ".json")).read_text())
    again, info2 = load_or_train("cnn", tmp_path, **kwargs)
    assert info2["cached"] and info2["test_accuracy"] == info["test_accuracy"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert not again.training


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: build_classifier("resnet"), ValueError, "arch"),
        (lambda: build_classifier("cnn", num_classes=1), ValueError, "num_classes"),
        (lambda: build_classifier("vit", image_size=40), ValueError, "image_size"),
        (lambda: load_or_train("mlp", "."), ValueError, "arch"),
        (lambda: train_classifier(nn.Linear(1, 1), [], None, epochs=0), ValueError, "epochs"),
        (lambda: train_classifier(nn.Linear(1, 1), [], None, epochs=1, lr=0.0), ValueError, "lr"),
    ],
)
def test_bad_arguments(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
