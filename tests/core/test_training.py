"""fit(): the paper's recipe on tiny models; loaders of every shape; bad set-ups."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr.training import TrainStep, param_groups


def _loader(n_batches=4, batch=8, seed=0, kind="tuple"):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.rand(batch, 3, 32, 32, generator=g)
        if kind == "tuple":
            out.append((x, torch.randint(0, 5, (batch,), generator=g)))
        elif kind == "dict":
            out.append({"image": x, "label": torch.zeros(batch)})
        else:
            out.append(x)
    return out


def test_fit_lowers_the_loss_and_reports_history() -> None:
    torch.manual_seed(0)
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    history = e.fit(_loader(), epochs=6, lr=0.05, progress=False, val_loader=_loader(1, seed=9))
    assert len(history) == 6 and e.history is history
    losses = history.column("loss")
    assert losses[-1] < losses[0]
    first, last = history[0], history[-1]
    assert last.area < first.area  # masks shrink
    assert 0.0 <= last.fidelity <= 1.0
    assert last.val_loss is not None and last.steps == 24
    assert first.loss == pytest.approx(1.5 * first.ce + 2 * first.area + 0.01 * first.variation)
    assert history.as_dicts()[0]["epoch"] == 1
    assert not e.head.training


@pytest.mark.parametrize("kind", ["tuple", "dict", "tensor"])
def test_loader_batch_forms(kind) -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    history = e.fit(_loader(2, 4, kind=kind), epochs=1, progress=False)
    assert history[0].steps == 2


def test_dataset_labels_are_ignored() -> None:
    """Two loaders with the same images and different labels train identical heads."""
    results = []
    for seed in (1, 2):
        torch.manual_seed(0)
        e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
        batches = [(x, torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(seed)))
                   for x, _ in _loader(2)]
        e.fit(batches, epochs=1, progress=False)
        results.append(e.state_dict())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key])


def test_optimizer_follows_the_paper() -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    trainer = TrainStep(e, total_steps=10)
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in e.head.named_parameters()}
    assert all(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert all(not names[id(p)].endswith("bias") for p in decay["params"])
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert max(g["max_lr"] for g in opt.param_groups) == 1e-3
    assert len(param_groups(e.head, 0.1)[0]["params"]) + len(no_decay["params"]) == len(
        list(e.head.parameters())
    )


def test_backbone_gets_no_gradients_and_stays_frozen() -> None:
    model = make_tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    e = TTAME(model, input_size=(3, 32, 32))
    e.fit(_loader(2), epochs=1, progress=False)
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running stats included


def test_empty_loader_and_bad_settings() -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    with pytest.raises(ValueError, match="yields no batches"):
        e.fit([], progress=False)
    with pytest.raises(ValueError, match="epochs"):
        e.fit(_loader(1), epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        e.fit(_loader(1), lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        e.fit(iter(_loader(1)), progress=False)
    with pytest.raises(ValueError, match="image_key"):
        e.fit([{"pixels": torch.rand(2, 3, 32, 32)}], progress=False)
    with pytest.raises(TypeError, match="loader"):
        e.fit([["not", "images"]], progress=False)
    with pytest.raises(ValueError, match="channels"):
        e.fit([torch.rand(2, 1, 32, 32)], progress=False)


def test_iterable_loader_with_steps_per_epoch() -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))

    class Stream:
        def __iter__(self):
            return iter(_loader(3, 4))

    history = e.fit(Stream(), epochs=2, steps_per_epoch=3, progress=False)
    assert history[-1].steps == 6


def test_progress_bar_can_be_shown(capsys) -> None:
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32))
    e.fit(_loader(1, 2), epochs=1, progress=True)
    assert "T-TAME epoch 1/1" in capsys.readouterr().err
