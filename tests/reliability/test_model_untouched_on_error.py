"""An exception raised inside the model leaves it exactly as it was found."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TTAME  # noqa: E402


class Bomb(nn.Module):
    """Identity that raises ``error`` on its ``at``-th call once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.armed_at: int | None = None
        self.error: BaseException = RuntimeError("boom")
        self.calls = 0

    def arm(self, at: int, error: BaseException) -> None:
        self.armed_at, self.error, self.calls = at, error, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.armed_at is not None and self.calls == self.armed_at:
            raise self.error
        return x


def _model() -> tuple[nn.Module, Bomb]:
    torch.manual_seed(0)
    model = setup.TinyCNN()
    bomb = Bomb()
    model.stage2.insert(1, bomb)  # conv -> bomb -> BN -> ReLU
    # A model as users leave it: training mode, one frozen stage, a BN in eval, a user hook.
    model.train()
    model.stage2[2].eval()
    for p in model.stage1.parameters():
        p.requires_grad_(False)
    model.stage3.register_forward_hook(lambda m, a, o: None)
    return model, bomb


def _state(model: nn.Module) -> dict:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
             "_forward_hooks_always_called", "_state_dict_hooks", "_load_state_dict_pre_hooks")
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: p.grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": {(k, h): dict(getattr(m, h, {})) for k, m in model.named_modules() for h in hooks},
        "global": (dict(module_globals._global_forward_hooks),
                   dict(module_globals._global_forward_pre_hooks),
                   dict(module_globals._global_backward_hooks)),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["tensors"].keys() == after["tensors"].keys()
    for name, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][name]), name
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"].values())
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["global"] == after["global"]


ERRORS = [RuntimeError("boom"), KeyboardInterrupt()]


@pytest.mark.parametrize("error", ERRORS, ids=["RuntimeError", "KeyboardInterrupt"])
@pytest.mark.parametrize("target", [None, 2, [[0, 1], [3, 4]]], ids=["pred", "int", "perimage"])
def test_attribute_interrupted_by_the_model(error, target):
    model, bomb = _model()
    explainer = TTAME(model, ["stage1", "stage2", "stage3"], input_size=(3, setup.SIZE, setup.SIZE))
    before = _state(model)
    x = torch.randn(2, 3, setup.SIZE, setup.SIZE)
    bomb.arm(3, error)
    explainer.attribute(x, target=target)
    explainer.attribute(x, target=target)
    with pytest.raises(type(error)):
        explainer.attribute(x, target=target)  # the model's 3rd call raises
    _assert_same(before, _state(model))
    bomb.arm(1, error)
    with pytest.raises(type(error)):
        explainer.explain(x, top_k=2)
    _assert_same(before, _state(model))
    # And the explainer still works afterwards.
    bomb.armed_at = None
    assert explainer.attribute(x, target=target).shape[0] == 2


@pytest.mark.parametrize("error", ERRORS, ids=["RuntimeError", "KeyboardInterrupt"])
@pytest.mark.parametrize("at", [3, 4], ids=["clean-forward", "masked-forward"])
def test_fit_interrupted_by_the_model(error, at, tmp_path):
    model, bomb = _model()
    explainer = TTAME(model, ["stage1", "stage2", "stage3"], input_size=(3, setup.SIZE, setup.SIZE))
    head_before = {k: v.clone() for k, v in explainer.state_dict().items()}
    before = _state(model)
    loader = DataLoader(TensorDataset(torch.randn(16, 3, setup.SIZE, setup.SIZE)), batch_size=4)
    bomb.arm(at, error)  # 2 calls per step: the 2nd step's clean (3) or masked (4) forward
    with pytest.raises(type(error)):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=tmp_path / "c.pt",
                      checkpoint_every=1)
    _assert_same(before, _state(model))
    # One step was taken (and checkpointed) before the error; its weights are finite.
    assert any(not torch.equal(head_before[k], v) for k, v in explainer.state_dict().items())
    assert (tmp_path / "c.pt").is_file()


def test_construction_failure_leaves_model_untouched():
    model, bomb = _model()
    before = _state(model)
    bomb.arm(1, RuntimeError("boom"))
    with pytest.raises(ValueError, match="input_size"):
        TTAME(model, ["stage1", "stage2", "stage3"], input_size=(3, setup.SIZE, setup.SIZE))
    _assert_same(before, _state(model))
    bomb.arm(1, RuntimeError("boom"))
    with pytest.raises(ValueError, match="boom"):
        TTAME(model, input_size=(3, setup.SIZE, setup.SIZE))  # the CNN adapter's probe run
    _assert_same(before, _state(model))
