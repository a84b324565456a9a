"""The Hugging Face Hub format: save_pretrained / from_pretrained (a folder, the Hub cache offline)
and push_to_hub (a mocked HfApi, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import make_tiny_cnn, make_tiny_vit

from ttame_attr import TTAME


@pytest.fixture(scope="module")
def trained() -> TTAME:
    torch.manual_seed(0)
    e = TTAME(make_tiny_cnn(), input_size=(3, 32, 32), head_init="pytorch")
    e.fit([torch.rand(4, 3, 32, 32) for _ in range(2)], epochs=2, progress=False)
    return e


def test_save_pretrained_round_trip(trained, tmp_path, images) -> None:
    folder = trained.save_pretrained(tmp_path / "head", metrics={"AD 15%": 12.5, "IC 15%": 30.0},
                                     training_data="8 random images")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = TTAME.from_pretrained(folder, make_tiny_cnn())
    assert torch.equal(loaded.attribute(images), trained.attribute(images))
    assert (loaded.layers, loaded.map_size, loaded.mask_space) == (trained.layers, trained.map_size,
                                                                   trained.mask_space)
    # TTAME.load reads the folder too
    assert torch.equal(TTAME.load(folder, make_tiny_cnn()).attribute(images), trained.attribute(images))


def test_config_and_card(trained, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "head", metrics={"AD 15%": 12.5},
                                     backbone="timm:resnet18.a1_in1k", training_data="8 random images")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "ttame_attr.head" and config["library_name"] == "ttame-attr"
    for key, value in [("layers", ["layer1", "layer2", "layer3"]), ("adapter", "cnn"), ("num_classes", 5),
                       ("input_size", [3, 32, 32]), ("map_size", [16, 16]), ("mask_space", "input"),
                       ("backbone", "timm:resnet18.a1_in1k"), ("model_class", "TinyCNN")]:
        assert config[key] == value, key
    assert config["model_weights"]["sha256"] and "package_version" in config
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ttame-attr\n")
    assert 'base_model: "timm/resnet18.a1_in1k"' in card
    for fragment in ("head for timm:resnet18.a1_in1k", "classifier `timm:resnet18.a1_in1k` (class "
                     "`tiny_models.TinyCNN`)", "`layer1`, `layer2`, `layer3`", "8 random images",
                     "2 epoch(s) of 2 steps (4 steps)", "| AD 15% | 12.5 |", "@article{ntrougkas2024ttame",
                     "Last epoch: loss"):
        assert fragment in card, fragment


def test_save_to_a_folder_writes_the_hub_format(trained, tmp_path, images) -> None:
    (tmp_path / "dir").mkdir()
    trained.save(tmp_path / "dir")
    assert (tmp_path / "dir" / "config.json").is_file()
    loaded = TTAME.load(tmp_path / "dir", make_tiny_cnn())
    assert torch.equal(loaded.attribute(images), trained.attribute(images))


def _hub_cache(cache: Path, repo_id: str, files: Path, commit: str = "a" * 40) -> None:
    """Lay out ``files`` as huggingface_hub's cache holds a downloaded repository."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(files, repo / "snapshots" / commit)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_from_pretrained_reads_the_hub_cache_offline(trained, tmp_path, images, offline) -> None:
    _hub_cache(tmp_path / "cache", "someone/tiny-head", trained.save_pretrained(tmp_path / "head"))
    loaded = TTAME.from_pretrained("someone/tiny-head", make_tiny_cnn(), cache_dir=tmp_path / "cache")
    assert torch.equal(loaded.attribute(images), trained.attribute(images))
    with pytest.raises(FileNotFoundError, match="someone/missing"):
        TTAME.from_pretrained("someone/missing", make_tiny_cnn(), cache_dir=tmp_path / "cache")


def test_from_pretrained_checks_the_model(trained, tmp_path, caplog) -> None:
    folder = trained.save_pretrained(tmp_path / "head")
    with pytest.raises(ValueError, match="outputs 7 classes, the head was trained for 5"):
        TTAME.from_pretrained(folder, make_tiny_cnn(num_classes=7))
    with pytest.raises(ValueError, match="no module named 'layer1'"):
        TTAME.from_pretrained(folder, make_tiny_vit())
    with caplog.at_level("WARNING"):
        TTAME.from_pretrained(folder, make_tiny_cnn(seed=1))
    assert "weights differ" in caplog.text
    with pytest.raises(ValueError, match="weights differ"):
        TTAME.from_pretrained(folder, make_tiny_cnn(seed=1), strict=True)


def test_from_pretrained_refuses_other_folders(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no \\['config.json', 'model.safetensors'\\]"):
        TTAME.from_pretrained(tmp_path, make_tiny_cnn())
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="does not describe a T-TAME head"):
        TTAME.from_pretrained(tmp_path, make_tiny_cnn())
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub repository id"):
        TTAME.from_pretrained(str(tmp_path / "nothing"), make_tiny_cnn())


class _FakeApi:
    """Records what push_to_hub asks of huggingface_hub.HfApi, and the folder it uploads."""

    calls: list = []

    def __init__(self, token=None) -> None:
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, kwargs, files))
        return "commit-info"


def test_push_to_hub_uploads_the_folder(trained, tmp_path, images, monkeypatch) -> None:
    import huggingface_hub

    _FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    assert trained.push_to_hub("me/tiny-head", private=True, token="tok") == "commit-info"
    (_, token), (_, repo, create), (_, repo2, upload, files) = _FakeApi.calls
    assert token == "tok" and repo == repo2 == "me/tiny-head"
    assert create == {"private": True, "exist_ok": True, "repo_type": "model"}
    assert upload["repo_type"] == "model" and upload["commit_message"] == "Upload T-TAME head"
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert 'TTAME.from_pretrained("me/tiny-head", model)' in files["README.md"].decode()
    for name, data in files.items():  # what was uploaded loads back
        (tmp_path / name).write_bytes(data)
    assert torch.equal(TTAME.from_pretrained(tmp_path, make_tiny_cnn()).attribute(images),
                       trained.attribute(images))
