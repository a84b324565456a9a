"""Checkpoints cannot run code, and damaged or foreign files get a clear error."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import reliability_setup as setup  # noqa: E402

from ttame_attr import TTAME  # noqa: E402
from ttame_attr._core.head_file import read_safetensors  # noqa: E402
from ttame_attr._core.storage import atomic_torch_save, safe_torch_load  # noqa: E402


class _Payload:
    """Unpickling this object creates the file ``target`` (a stand-in for any code)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').close()",))


def _malicious_files(tmp_path: Path, target: Path) -> list[Path]:
    """The payload as a torch zip checkpoint, inside a head-like dict, and as a bare pickle."""
    zipped = tmp_path / "evil.pt"
    torch.save({"format": "ttame_attr.head", "state_dict": _Payload(target)}, zipped)
    training = tmp_path / "evil_training.pt"
    torch.save({"format": "ttame_attr.training", "head": _Payload(target)}, training)
    legacy = tmp_path / "evil.pkl"
    legacy.write_bytes(pickle.dumps(_Payload(target)))
    return [zipped, training, legacy]


def test_payload_is_live_when_loaded_unsafely(tmp_path):
    # Control: the crafted file really runs code with an unsafe loader.
    target = tmp_path / "pwned_control"
    path = _malicious_files(tmp_path, target)[0]
    torch.load(path, weights_only=False)
    assert target.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_in_a_checkpoint_is_refused_without_running(tmp_path):
    target = tmp_path / "pwned"
    model, explainer, loader = setup.build()
    for path in _malicious_files(tmp_path, target):
        with pytest.raises(ValueError, match="refused"):
            safe_torch_load(path)
        with pytest.raises(ValueError, match="refused"):
            TTAME.load(path, model)
        with pytest.raises(ValueError, match="refused"):
            explainer.fit(loader, epochs=1, progress=False, checkpoint_path=path, resume=True)
        assert not target.exists()
    # The refused training checkpoint also stops fit(resume=True) before anything trains.
    evil = tmp_path / "evil_training.pt"
    before = {k: v.clone() for k, v in explainer.state_dict().items()}
    with pytest.raises(ValueError, match="refused"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=evil, resume=True)
    assert all(torch.equal(before[k], v) for k, v in explainer.state_dict().items())
    assert not target.exists()


def test_truncated_corrupted_and_foreign_files(tmp_path):
    model, explainer, loader = setup.build()
    good = explainer.save(tmp_path / "head.pt")
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01not a checkpoint" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(ValueError, match="not a readable checkpoint|damaged"):
            TTAME.load(path, model)

    foreign = tmp_path / "state_dict.pt"
    torch.save(explainer.state_dict(), foreign)  # a bare state_dict: valid, but not ours
    with pytest.raises(ValueError, match="not a T-TAME head"):
        TTAME.load(foreign, model)
    # a head file (safetensors) is not a training checkpoint
    with pytest.raises(ValueError, match="safetensors file .*not a torch checkpoint"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=good, resume=True)
    with pytest.raises(FileNotFoundError, match="path"):
        TTAME.load(tmp_path / "missing.pt", model)


def test_safetensors_head_round_trip_and_damage(tmp_path):
    model, explainer, _ = setup.build()
    with torch.no_grad():
        explainer.head.fusion.weight.add_(1.0)  # not the freshly initialised weights
    path = explainer.save(tmp_path / "head.safetensors")
    loaded = TTAME.load(path, model)
    for name, value in explainer.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    assert loaded.layers == explainer.layers

    renamed = tmp_path / "head.bin"  # detected by content, not only by name
    renamed.write_bytes(path.read_bytes())
    assert torch.equal(TTAME.load(renamed, model).head.fusion.weight, explainer.head.fusion.weight)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="safetensors"):
        TTAME.load(truncated, model)
    import safetensors.torch

    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match="without T-TAME metadata"):
        TTAME.load(bare, model)


def test_nan_weights_are_never_saved(tmp_path):
    _, explainer, _ = setup.build()
    explainer.save(tmp_path / "good.pt")
    with torch.no_grad():
        explainer.head.fusion.bias[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        explainer.save(tmp_path / "good.pt")
    with pytest.raises(ValueError, match="non-finite"):
        explainer.save(tmp_path / "bad.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pt"]
    # The earlier good file is intact.
    payload = read_safetensors(tmp_path / "good.pt")  # TTAME.save writes safetensors, whatever the suffix
    assert torch.isfinite(payload["state_dict"]["fusion.bias"]).all()


def _checked_signature_bytes(raw: bytes) -> list[int]:
    """Positions of the bytes of the zip signatures the reader checks: every local file header
    (PK\\x03\\x04), every central directory entry (PK\\x01\\x02) and the end of the central
    directory (PK\\x05\\x06). (torch.load does not verify CRC-32s, so a changed byte inside a
    record's data can load as other values; damage there is not what this test makes.)"""
    records = len(zipfile.ZipFile(io.BytesIO(raw)).infolist())
    starts = []
    for signature, expected in ((b"PK\x03\x04", records), (b"PK\x01\x02", records),
                                (b"PK\x05\x06", 1)):
        found = [i for i in range(len(raw) - 3) if raw[i:i + 4] == signature]
        assert len(found) == expected, (signature, found)
        starts += found
    return [i + k for i in starts for k in range(4)]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoint_bytes_give_value_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("damaged")
    path = atomic_torch_save({"format": "x", "w": torch.arange(6.0), "n": [1, 2]},
                             folder / "c.pt")
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        positions = data.draw(st.lists(st.sampled_from(_checked_signature_bytes(bytes(raw))),
                                       min_size=1, max_size=4, unique=True), label="positions")
        for i in positions:  # any other byte value
            raw[i] = data.draw(st.integers(0, 254).map(lambda b, old=raw[i]: b + (b >= old)),
                               label="byte")
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"^path: '.*' (is not a readable checkpoint|is refused)"):
        safe_torch_load(path)


def test_a_changed_byte_inside_tensor_data_is_refused(tmp_path):
    path = atomic_torch_save({"w": torch.arange(64.0)}, tmp_path / "c.pt")
    raw = bytearray(path.read_bytes())
    start = raw.find(torch.arange(64.0).numpy().tobytes()[:16])  # the tensor's stored bytes
    assert start > 0
    raw[start + 20] ^= 0x01  # one bit of one float: torch.load alone would read 5.0 as 5.000...
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        safe_torch_load(path)


def test_atomic_save_keeps_previous_file_when_writing_fails(tmp_path):
    path = atomic_torch_save({"v": torch.ones(2)}, tmp_path / "c.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError, match="cannot serialise"):
        atomic_torch_save({"v": Unpicklable()}, path)
    assert torch.equal(safe_torch_load(path)["v"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left
    assert zipfile.is_zipfile(io.BytesIO(path.read_bytes()))


def test_resume_from_a_damaged_training_checkpoint_is_a_clear_error(tmp_path):
    _, explainer, loader = setup.build()
    path = tmp_path / "run.pt"
    explainer.fit(loader, epochs=1, progress=False, checkpoint_path=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    (tmp_path / ".run.pt.abc.tmp").write_bytes(data[:10])  # debris of a killed write
    _, explainer, loader = setup.build()
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        explainer.fit(loader, epochs=1, progress=False, checkpoint_path=path, resume=True)
