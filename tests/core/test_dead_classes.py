"""Dead class maps: the zero initialisation that prevents them and the check that reports them.

A class whose own-label mask is pushed to zero everywhere early in training never recovers: near
``m = 0`` the area term's gradient on the map's logit (about ``0.3 m^0.3``) outweighs the
cross-entropy's (proportional to ``m``). ``fit`` records such classes per epoch and warns.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME, AttentionHead
from ttame_attr.training import (
    DEAD_MAP_PEAK,
    FULL_MAP_FLOOR,
    ClassPeaks,
    EpochStats,
    StepResult,
    TrainingHistory,
)


def _explainer(**kwargs) -> TTAME:
    return TTAME(make_tiny_cnn(num_classes=5), input_size=(3, 32, 32), **kwargs)


def test_zero_init_starts_every_class_map_at_one_half() -> None:
    explainer = _explainer()
    assert torch.count_nonzero(explainer.head.fusion.weight) == 0
    assert torch.count_nonzero(explainer.head.fusion.bias) == 0
    maps = explainer.attribute(torch.rand(3, 3, 32, 32), target=torch.tensor([0, 2, 4]))
    assert torch.equal(maps, torch.full_like(maps, 0.5))


def test_pytorch_init_is_one_argument_away() -> None:
    torch.manual_seed(0)
    explainer = _explainer(head_init="pytorch")
    bound = 1 / explainer.head.fusion.in_channels ** 0.5  # nn.Conv2d's default: U(-1/sqrt(fan_in), ..)
    w = explainer.head.fusion.weight
    assert torch.count_nonzero(w) == w.numel() and w.abs().max() <= bound
    maps = explainer.attribute(torch.rand(2, 3, 32, 32), target=0)
    assert maps.std() > 0


def test_zero_init_still_learns() -> None:
    # Zero fusion weights give the branches no gradient at the first step, but the fusion gets
    # one (the branch outputs are not zero), so maps differ between classes after one step.
    explainer = _explainer()
    loader = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    explainer.fit(loader, epochs=1, lr=1e-1, progress=False)
    assert torch.count_nonzero(explainer.head.fusion.weight) > 0
    x = loader[0]
    maps = explainer.attribute(x, target=explainer.model(x).argmax(1))  # classes trained on
    assert maps.std() > 0


@pytest.mark.parametrize("bad", ["kaiming", None, 0])
def test_bad_head_init_names_the_argument_and_the_choices(bad) -> None:
    with pytest.raises(ValueError, match=r"head_init: expected one of \('zeros', 'pytorch'\)"):
        _explainer(head_init=bad)
    with pytest.raises(ValueError, match="head_init"):
        AttentionHead([4], 3, (2, 2), init=bad)


def _result(labels, peaks, stepped=True) -> StepResult:
    return StepResult(None, torch.tensor(1.0), len(labels), stepped, None if stepped else "loss",
                      torch.tensor(labels), torch.tensor(peaks))


def test_class_peaks_finds_classes_below_the_threshold_all_epoch() -> None:
    piece = ClassPeaks(num_classes=4)
    piece.on_batch_end(None, _result([0, 1, 1], [0.9, 0.01, 0.05]))
    piece.on_batch_end(None, _result([1, 2], [DEAD_MAP_PEAK - 1e-3, 0.2]))
    piece.on_batch_end(None, _result([2, 3], [0.0, 0.0], stepped=False))  # a skipped step is not judged
    record: dict = {}
    piece.on_epoch_end(None, record)
    assert record["dead_classes"] == [1]  # 3 was never trained on; 2 peaked at 0.2
    # The next epoch starts afresh: class 1 alive again.
    piece.on_batch_end(None, _result([1], [0.5]))
    piece.on_epoch_end(None, record)
    assert record["dead_classes"] == []


def test_class_peaks_state_round_trip() -> None:
    piece = ClassPeaks(num_classes=3)
    piece.on_batch_end(None, _result([2], [0.03]))
    restored = ClassPeaks(num_classes=3)
    restored.load_state_dict(piece.state_dict())
    record: dict = {}
    restored.on_epoch_end(None, record)
    assert record["dead_classes"] == [2]
    other = ClassPeaks(num_classes=3)
    other.load_state_dict({})  # a checkpoint from before the check: starts afresh
    other.on_epoch_end(None, record)
    assert record["dead_classes"] == []


def _floored(labels, floors, stepped=True) -> StepResult:
    return StepResult(None, torch.tensor(1.0), len(labels), stepped, None if stepped else "loss",
                      torch.tensor(labels), torch.ones(len(labels)), torch.tensor(floors))


def test_class_peaks_finds_full_maps_above_the_floor_all_epoch() -> None:
    # A full map: the class's mask stayed above FULL_MAP_FLOOR on every pixel of all its images.
    piece = ClassPeaks(num_classes=4)
    piece.on_batch_end(None, _floored([0, 1, 1], [0.95, 0.99, FULL_MAP_FLOOR + 1e-3]))
    piece.on_batch_end(None, _floored([0, 2], [0.5, 0.97]))
    piece.on_batch_end(None, _floored([3], [1.0], stepped=False))  # a skipped step is not judged
    record: dict = {}
    piece.on_epoch_end(None, record)
    assert record["full_classes"] == [1, 2]  # 0 dipped to 0.5 once; 3 was never trained on
    assert record["dead_classes"] == []  # the peaks are 1
    piece.on_batch_end(None, _floored([1], [0.2]))  # the next epoch starts afresh
    piece.on_epoch_end(None, record)
    assert record["full_classes"] == []
    # Saved and restored mid-epoch; a checkpoint from before the check starts the floors afresh.
    piece.on_batch_end(None, _floored([2], [0.93]))
    restored = ClassPeaks(num_classes=4)
    restored.load_state_dict(piece.state_dict())
    restored.on_epoch_end(None, record)
    assert record["full_classes"] == [2]
    old = ClassPeaks(num_classes=4)
    old.load_state_dict({"class_peaks": [1.0, 1.0, 1.0, 1.0]})
    old.on_epoch_end(None, record)
    assert record["full_classes"] == [] and record["dead_classes"] == []


def test_fit_records_and_warns_about_full_maps(caplog) -> None:
    # Fusion bias +30 on every class: every mask is sigmoid(30) = 1 on every pixel, the saturated
    # map a Swin head reached at a large learning rate; lr 1e-6 keeps it there for the epoch.
    model = make_tiny_cnn(num_classes=5)
    loader = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        predicted = sorted({int(k) for x in loader for k in model(x).argmax(1)})
    explainer = _explainer()
    explainer.model.load_state_dict(model.state_dict())
    with torch.no_grad():
        explainer.head.fusion.bias[:] = 30.0
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit(loader, epochs=1, lr=1e-6, progress=False)
    assert history.full_classes() == predicted == history[-1].full_classes
    assert history.dead_classes() == []
    warned = [r.getMessage() for r in caplog.records if "are full" in r.getMessage()]
    assert len(warned) == 1 and f"class(es) {', '.join(map(str, predicted))} are full" in warned[0]
    assert "recipe='paper'" in warned[0]
    assert history.full_class_advice() in history.warnings()


def test_cli_fit_prints_the_full_map_advice(monkeypatch, tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    from ttame_attr.cli import main

    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(TrainingHistory, "full_classes", lambda self: [2])
    rc = main(["fit", "torchvision:resnet18", str(tmp_path), "--num-classes", "3", "--input-size", "32",
               "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "h.pt"), "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "note: the T-TAME head's maps of class(es) 2 are full" in out
    assert "(ttame fit: --recipe paper, --lr, --seed)" in out


def _killed_explainer(dead: list[int]) -> TTAME:
    """A head whose maps of ``dead`` are zero everywhere: fusion rows 0, bias -30."""
    explainer = _explainer()
    with torch.no_grad():
        explainer.head.fusion.bias[dead] = -30.0
    return explainer


def test_fit_records_and_warns_about_dead_classes(caplog, monkeypatch) -> None:
    from ttame_attr.training import _fit

    monkeypatch.setattr(_fit, "blank_class", lambda explainer: -1)  # no dead class is the blank one
    model = make_tiny_cnn(num_classes=5)
    loader = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        predicted = sorted({int(k) for x in loader for k in model(x).argmax(1)})
    explainer = _killed_explainer(predicted)
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit(loader, epochs=1, lr=1e-6, progress=False)
    assert history.dead_classes() == predicted
    assert history[-1].dead_classes == predicted
    warned = [r.getMessage() for r in caplog.records if "given up on class(es)" in r.getMessage()]
    assert len(warned) == 1 and ", ".join(map(str, predicted)) in warned[0]
    assert "head_init='zeros'" in warned[0]


def test_a_healthy_fit_reports_no_dead_class(caplog) -> None:
    explainer = _explainer()
    loader = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit(loader, epochs=1, lr=1e-6, progress=False)
    assert history.dead_classes() == [] and history.dead_class_advice() == ""
    assert not [r for r in caplog.records if "given up" in r.getMessage()]


def test_history_advice_lists_many_classes_briefly() -> None:
    stats = EpochStats(epoch=1, loss=1.0, ce=1.0, area=0.1, variation=0.1, fidelity=0.5, lr=1e-3, steps=1,
                       dead_classes=list(range(25)))
    advice = TrainingHistory([stats]).dead_class_advice()
    assert "0, 1, 2" in advice and "19 and 5 more" in advice and "24" not in advice
    assert TrainingHistory([stats]).warnings() == [advice]
    full = dataclasses.replace(stats, dead_classes=[], full_classes=list(range(100, 121)))
    advice = TrainingHistory([full]).full_class_advice()
    assert "100, 101" in advice and "119 and 1 more" in advice and "120" not in advice


@pytest.mark.parametrize("blank", [-1, 1])
def test_cli_fit_prints_the_dead_class_advice(monkeypatch, tmp_path, capsys, blank: int) -> None:
    import numpy as np
    from PIL import Image

    from ttame_attr.cli import main
    from ttame_attr.training import _fit

    monkeypatch.setattr(_fit, "blank_class", lambda explainer: blank)

    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(TrainingHistory, "dead_classes", lambda self: [1])
    rc = main(["fit", "torchvision:resnet18", str(tmp_path), "--num-classes", "3", "--input-size", "32",
               "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "h.pt"), "-q",
               "--head-init", "pytorch"])
    assert rc == 0
    out = capsys.readouterr().out
    if blank == 1:  # the classifier's default class: refitting is not the advice
        assert "note: the T-TAME head has given up on class 1, which is what the classifier" in out
        assert "(ttame fit: --head-init" not in out
    else:
        assert "note: the T-TAME head has given up on class(es) 1:" in out
        assert "(ttame fit: --head-init, --lr, --seed)" in out


class _SumModel(torch.nn.Module):
    """Logits ``[s, -s - 1, 0.5]`` with ``s`` the sum of the input; a conv for the head's features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.sum(dim=(1, 2, 3)) + 0 * self.conv(x).mean(dim=(1, 2, 3))
        return torch.stack([s, -s - 1, torch.full_like(s, 0.5)], dim=1)


@pytest.mark.parametrize(("space", "expected"), [
    # pixel space, mean = std = 0.5: black pixels are the input -1, s = -3 * 8 * 8 -> [-192, 191, 0.5]
    ("pixel", 1),
    # input space: the masked input is 0, s = 0 -> [0, -1, 0.5]
    ("input", 2),
])
def test_blank_class_is_the_prediction_for_a_fully_masked_image(space: str, expected: int) -> None:
    from ttame_attr.training._fit import blank_class

    model = _SumModel()
    explainer = TTAME(model, layers=["conv"], input_size=(3, 8, 8), num_classes=3,
                      normalization=((0.5,) * 3, (0.5,) * 3), mask_space=space)
    model.train()
    assert blank_class(explainer) == expected
    assert model.training  # the user's mode is given back


def test_advice_tells_the_blank_class_from_classes_lost_in_training() -> None:
    stats = EpochStats(epoch=1, loss=1.0, ce=1.0, area=0.1, variation=0.1, fidelity=0.5, lr=1e-3, steps=1,
                       dead_classes=[1, 3])
    both = TrainingHistory([stats], blank_class=3).dead_class_advice()
    first, _, second = both.partition(" Also, ")
    assert "given up on class(es) 1:" in first and "3" not in first.split(":")[0]
    assert "given up on class 3, which is what the classifier predicts for a fully masked image" in second
    only_blank = TrainingHistory([stats.__class__(**{**stats.__dict__, "dead_classes": [3]})],
                                 blank_class=3).dead_class_advice()
    assert "class(es)" not in only_blank and "fully masked image" in only_blank
    assert "fully masked" not in TrainingHistory([stats], blank_class=0).dead_class_advice()


def test_fit_names_the_blank_class_when_maps_die(caplog) -> None:
    model = make_tiny_cnn(num_classes=5)
    loader = [torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        predicted = sorted({int(k) for x in loader for k in model(x).argmax(1)})
    explainer = _killed_explainer(predicted)
    with torch.no_grad():  # the tiny CNN has no normalisation: it is masked in input space
        expected = int(model(torch.zeros(1, 3, 32, 32)).argmax(1))
    with caplog.at_level(logging.WARNING, logger="ttame_attr"):
        history = explainer.fit(loader, epochs=1, lr=1e-6, progress=False)
    assert history.blank_class == expected
    warned = [r.getMessage() for r in caplog.records if "given up on class" in r.getMessage()]
    assert len(warned) == 1
    named = f"class {expected}, which is what the classifier predicts" in warned[0]
    assert named == (expected in predicted)
    healthy = _explainer().fit(loader, epochs=1, lr=1e-6, progress=False)
    assert healthy.blank_class is None  # only looked up when maps died
