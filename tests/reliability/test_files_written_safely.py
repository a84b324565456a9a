"""Issue 33, cases 3, 4 and 11: files the package writes keep their mode, survive a full disk,
and an export writes what was asked for or nothing."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import torch
from tiny_models import make_tiny_cnn

from ttame_attr import TTAME
from ttame_attr._core import storage


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def explainer() -> TTAME:
    return TTAME(make_tiny_cnn(), input_size=(3, 32, 32))


def _disk_full(tmp: str, data) -> None:
    with open(tmp, "wb") as f:
        f.write(bytes(data)[:10])
    raise OSError(errno.ENOSPC, "No space left on device")


# ---------------------------------------------------------------- case 4: the mode is kept
def test_a_file_replaced_keeps_its_mode(tmp_path, umask_022):
    target = tmp_path / "head.pt"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    storage.atomic_torch_save({"x": torch.zeros(2)}, target)
    assert _mode(target) == 0o644  # was 0o600 (mkstemp) before the fix


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        storage.atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("a"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o640
    assert os.umask(old) == old  # the umask was put back
    os.umask(old)


def test_a_saved_head_over_a_group_readable_file_stays_readable(tmp_path, explainer, umask_022):
    target = tmp_path / "head.pt"
    target.write_bytes(b"old")
    os.chmod(target, 0o664)
    explainer.save(target)
    assert _mode(target) == 0o664


# ------------------------------------------------------- case 3: a full disk keeps the old file
@pytest.mark.parametrize("what", ["torch_save", "head", "pt2"])
def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch, explainer, what):
    target = tmp_path / ("model.pt2" if what == "pt2" else "head.pt")
    target.write_bytes(b"previous contents")
    monkeypatch.setattr(storage, "_write_all", _disk_full)
    with pytest.raises(OSError, match=r"no space left on .*; the previous file is kept") as info:
        if what == "torch_save":
            storage.atomic_torch_save({"x": torch.zeros(3)}, target)
        elif what == "head":
            explainer.save(target)
        else:
            storage.atomic_export_save(explainer.export_program(), target)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_a_full_disk_on_a_new_file_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_write_all", _disk_full)
    with pytest.raises(OSError, match="no file was written"):
        storage.atomic_torch_save({"x": torch.zeros(3)}, tmp_path / "new.pt")
    assert list(tmp_path.iterdir()) == []


def test_pt2_export_round_trips_through_the_atomic_writer(tmp_path, explainer):
    path = storage.atomic_export_save(explainer.export_program(), tmp_path / "m.pt2")
    x = torch.rand(2, 3, 32, 32)
    logits = torch.export.load(path).module()(x)[0]
    assert torch.allclose(logits, explainer.model(x), atol=1e-5)


# ----------------------------------------------------------------- case 11: the opset asked for
def test_export_onnx_refuses_an_opset_it_cannot_write(tmp_path, explainer):
    with pytest.raises(ValueError, match=r"opset: 7 was asked for, .* could only write opset 18"):
        explainer.export_onnx(tmp_path / "m.onnx", opset=7)
    assert not (tmp_path / "m.onnx").exists()


def test_export_onnx_writes_the_opset_asked_for(tmp_path, explainer):
    import onnx

    path = explainer.export_onnx(tmp_path / "m.onnx", opset=18)
    assert {i.domain: i.version for i in onnx.load(path).opset_import}[""] == 18
