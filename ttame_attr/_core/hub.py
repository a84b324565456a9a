"""Heads in the Hugging Face Hub format: a folder with ``model.safetensors``, ``config.json`` and
a ``README.md`` model card, saved locally, downloaded with ``huggingface_hub`` or uploaded.

Saving and loading a local folder need no extra package; downloading (``from_pretrained`` of a
repository id) and uploading (``push_to_hub``) need ``pip install "ttame-attr[hub]"``. Nothing
here is pickled: weights in safetensors, everything else JSON.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ttame_attr._core.fingerprint import check_model_identity
from ttame_attr._core.head_file import (
    FORMAT,
    FORMAT_VERSION,
    explainer_from_config,
    load_head,
    read_safetensors,
    save_head,
    saved_config,
    saved_tensors,
    write_head_file,
)
from ttame_attr._core.model_card import model_card
from ttame_attr._core.optional import require
from ttame_attr._core.storage import atomic_write

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "from_pretrained", "load_any", "push_to_hub", "save_any",
           "save_pretrained"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def _huggingface_hub() -> Any:
    return require("huggingface_hub", "hub", "downloading or uploading heads",
                   note="(A local folder written by save_pretrained loads without it.)")


def save_pretrained(
    explainer: Any, save_directory: str | Path, *, metrics: Mapping[str, Any] | None = None,
    backbone: str | None = None, training_data: str | None = None, repo_id: str | None = None,
) -> Path:
    """Write the head in the Hugging Face Hub format: a folder to upload, share or load.

    The folder holds ``model.safetensors`` (the head's weights, and the configuration as
    metadata), ``config.json`` (everything :meth:`from_pretrained` needs: layers, adapter, input
    size, map size, normalisation, mask space, class count, the model's class, backbone and a
    fingerprint of its weights, the package version) and a ``README.md`` model card (backbone,
    layers, the training schedule from ``explainer.history``, ``metrics``, the citation). No
    pickle; no extra package needed.

    Args:
        save_directory: the folder (created if missing; the three files are replaced).
        metrics: ``{name: value}`` for the card, e.g. ``{"AD 15%": 31.2, "IC 15%": 18.0}``.
        backbone: where the classifier comes from, e.g. ``"torchvision:resnet50"`` (the CLI's
            model spec); found by itself for timm (``timm:NAME``) and transformers (``hf:REPO``)
            models.
        training_data: a sentence for the card on the training images (how many, from where).
        repo_id: the Hub repository, for the card's loading example.

    Returns:
        The folder.

    Raises:
        ValueError: if ``save_directory`` is a file, or the head holds NaN or inf weights.

    Example:
        >>> import tempfile, torch, torchvision
        >>> from ttame_attr import TTAME
        >>> model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
        >>> explainer = TTAME(model, input_size=(3, 64, 64))
        >>> folder = explainer.save_pretrained(tempfile.mkdtemp() + "/head")
        >>> sorted(p.name for p in folder.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
        >>> TTAME.from_pretrained(folder, model).layers
        ['layer2', 'layer3', 'layer4']
    """
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_directory: {str(folder)!r} is a file; give a folder (created if missing).")
    state = saved_tensors(explainer, folder / WEIGHTS_NAME)
    config = saved_config(explainer, backbone)
    folder.mkdir(parents=True, exist_ok=True)
    write_head_file(folder / WEIGHTS_NAME, state, config)
    text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "library_name": "ttame-attr",
                       **config}, indent=2)
    atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    card = model_card(config, history=explainer.history, metrics=metrics, training_data=training_data,
                      repo_id=repo_id)
    atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(card, encoding="utf-8"))
    return folder


def _load_files(cls: Any, config_path: Path, weights_path: Path, model: nn.Module, source: str, *,
                map_location: Any, strict: bool, options: dict[str, Any]) -> Any:
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"path: {str(config_path)!r} is not a readable config.json: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"path: {str(config_path)!r} does not describe a T-TAME head (no format "
                         f"{FORMAT!r}); the folder was not written by save_pretrained.")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"path: {str(config_path)!r} was written by a newer ttame_attr (format "
                         f"{config['format_version']}); upgrade ttame_attr to read it.")
    state_dict = read_safetensors(Path(weights_path))["state_dict"]
    explainer = explainer_from_config(cls, config, state_dict, model, source, map_location=map_location,
                                      options=options)
    check_model_identity(config, model, source, strict)  # after the checks that it fits at all
    return explainer


def from_pretrained(
    cls: Any, repo_id_or_dir: str | Path, model: nn.Module, *, revision: str | None = None,
    cache_dir: str | Path | None = None, token: str | bool | None = None, local_files_only: bool = False,
    map_location: Any = None, strict: bool = False, **kwargs: Any,
) -> Any:
    """Load a head written by :meth:`save_pretrained` from a folder or a Hub repository.

    A local folder needs no network and no extra package. A repository id (``"ORG/NAME"``) is
    fetched with ``huggingface_hub.hf_hub_download`` (``pip install "ttame-attr[hub]"``), which
    caches it and honours ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``. The model is checked as
    :meth:`load` checks it: the saved layers, shapes, class count and map size must fit, and a
    model whose class or weights differ from those the head was trained with is warned about
    (refused with ``strict=True``), naming the first difference.

    Args:
        repo_id_or_dir: a folder, or a Hub repository id.
        model: the classifier the head was trained for.
        revision: a branch, tag or commit of the repository.
        cache_dir: the Hub cache to use (default: ``huggingface_hub``'s).
        token: a Hub token for private repositories (default: the logged-in user's).
        local_files_only: use the cache only, never the network.
        map_location: where the head goes; by default the model's device.
        strict: refuse, instead of warning, a model whose class or weights differ.
        **kwargs: overrides for the constructor (e.g. ``mask_space``).

    Returns:
        The explainer, ready to :meth:`attribute`.

    Raises:
        FileNotFoundError: if the folder lacks the files, or the repository or its files cannot
            be found.
        ValueError: if the folder was not written by :meth:`save_pretrained` or the model does
            not fit.
        ImportError: for a repository id without ``huggingface_hub``.
    """
    options = {"map_location": map_location, "strict": strict, "options": kwargs}
    folder = Path(repo_id_or_dir)
    if folder.is_dir():
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"repo_id_or_dir: the folder {str(folder)!r} has no {missing}; "
                                    "it was not written by save_pretrained.")
        return _load_files(cls, folder / CONFIG_NAME, folder / WEIGHTS_NAME, model, repr(str(folder)),
                           **options)
    if not isinstance(repo_id_or_dir, str) or repo_id_or_dir.count("/") != 1:
        raise FileNotFoundError(f"repo_id_or_dir: {str(repo_id_or_dir)!r} is neither a folder nor a Hub "
                                "repository id (ORG/NAME).")
    hf = _huggingface_hub()
    where = {"repo_id": repo_id_or_dir, "revision": revision, "cache_dir": cache_dir, "token": token,
             "local_files_only": local_files_only, "library_name": "ttame-attr"}
    try:
        paths = [Path(hf.hf_hub_download(filename=name, **where)) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except (hf.errors.RepositoryNotFoundError, hf.errors.RevisionNotFoundError,
            hf.errors.EntryNotFoundError, hf.errors.LocalEntryNotFoundError) as err:
        raise FileNotFoundError(
            f"repo_id_or_dir: could not get {CONFIG_NAME} and {WEIGHTS_NAME} of the Hub repository "
            f"{repo_id_or_dir!r} (revision {revision or 'main'}): {type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}"
        ) from err
    return _load_files(cls, paths[0], paths[1], model, f"hub:{repo_id_or_dir}", **options)


def push_to_hub(
    explainer: Any, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
    revision: str | None = None, commit_message: str = "Upload T-TAME head", create_pr: bool = False,
    metrics: Mapping[str, Any] | None = None, backbone: str | None = None, training_data: str | None = None,
) -> Any:
    """Upload the head to the Hugging Face Hub, in the format of :meth:`save_pretrained`.

    Creates the repository if needed (``HfApi.create_repo``), writes the folder to a temporary
    directory and uploads it in one commit (``HfApi.upload_folder``). Needs
    ``pip install "ttame-attr[hub]"`` and a token with write access (``hf auth login``).

    Args:
        repo_id: ``"ORG/NAME"`` (or ``"NAME"`` for the token's user).
        private: create the repository private (an existing one is left as it is).
        token: a Hub token (default: the logged-in user's).
        revision: the branch to commit to.
        commit_message: the commit's message.
        create_pr: open a pull request instead of committing.
        metrics: as in :meth:`save_pretrained`.
        backbone: as in :meth:`save_pretrained`.
        training_data: as in :meth:`save_pretrained`.

    Returns:
        ``huggingface_hub``'s ``CommitInfo`` of the upload.
    """
    hf = _huggingface_hub()
    api = hf.HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(repo, "repo_id", None) or repo_id
    with tempfile.TemporaryDirectory(prefix="ttame_head_") as tmp:
        save_pretrained(explainer, tmp, metrics=metrics, backbone=backbone, training_data=training_data,
                        repo_id=repo_id)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                                 commit_message=commit_message, create_pr=create_pr)


def save_any(explainer: Any, path: str | Path) -> Path:
    """:meth:`TTAME.save`: an existing folder gets the Hub layout, any other path one safetensors file."""
    return save_pretrained(explainer, path) if Path(path).is_dir() else save_head(explainer, path)


def load_any(cls: Any, path: str | Path, model: nn.Module, *, map_location: Any = None,
             strict: bool = False, **kwargs: Any) -> Any:
    """:meth:`TTAME.load`: a Hub folder, a head file (this version's or older) or an authors' checkpoint."""
    if Path(path).is_dir():
        return from_pretrained(cls, path, model, map_location=map_location, strict=strict, **kwargs)
    return load_head(cls, path, model, map_location=map_location, strict=strict, **kwargs)
