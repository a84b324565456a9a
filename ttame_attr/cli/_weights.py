"""``--weights FILE``: a local state dict (``.pt``/``.pth``/``.bin``/``.ckpt`` or ``.safetensors``)
loaded into the model a spec built, e.g. a fine-tuned ``torchvision:resnet18 --num-classes 5``.

Torch files are read without running code (:func:`ttame_attr._core.storage.safe_torch_load`:
tensors and plain values only, zip checksums verified). State dicts nested under
``"state_dict"``, ``"model_state_dict"`` or ``"model"`` (Lightning, common training scripts) are
found, and a ``"module."`` (DistributedDataParallel) or ``"model."`` (Lightning) prefix is
stripped when that makes the keys match. Loading is strict: every key and shape must match.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ttame_attr.cli._errors import CLIError

__all__ = ["NESTED_KEYS", "STRIPPED_PREFIXES", "load_weights", "read_state_dict"]

logger = logging.getLogger(__name__)

#: Keys a training checkpoint keeps the model's state dict under, tried in this order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes of wrapped models' keys, stripped when the stripped keys match the model better.
STRIPPED_PREFIXES = ("module.", "model.", "module.model.")
_SHOWN = 5  # keys listed per kind of mismatch


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()))


def _read(path: Path) -> Any:
    """The file's contents: safetensors, else a torch file read without running code."""
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CLIError("--weights: .safetensors files need safetensors; install it with "
                           '`pip install "ttame-attr[safetensors]"` (or save the weights with torch.save).'
                           ) from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ...: a damaged file
            raise CLIError(f"--weights: {str(path)!r} is not a readable .safetensors file (truncated or "
                           f"corrupted?): {type(err).__name__}: {err}") from None
    from ttame_attr._core.storage import safe_torch_load

    try:
        return safe_torch_load(path, map_location="cpu")
    except ValueError as err:
        cause = err.__cause__
        text = str(cause if cause is not None else err)
        found = (re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
                 or re.search(r"reduce for unrecognized function <?(?:built-in function )?([\w.]+)", text))
        if found:
            # an object of a class or a function call (a pickled model, an optimizer, os.system):
            # loading it could run code. torch's advice (weights_only=False) is not repeated.
            what = f" (it calls or builds {found.group(1)})"
            raise CLIError(
                f"--weights: {str(path)!r} holds more than tensors and plain values: code that would run "
                f"when loaded{what}. It was refused and nothing from it was executed. Save the weights "
                "alone: torch.save(model.state_dict(), 'weights.pt'), or as .safetensors."
            ) from None
        unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        # torch's own advice (load with weights_only=False, i.e. run the file's code) is never quoted
        plain = [line for line in text.splitlines() if line.strip() and "weights_only" not in line
                 and "weights only" not in line.lower() and "documentation of torch.load" not in line]
        detail = unpickler.group(1) if unpickler else (plain or [""])[0]
        raise CLIError(f"--weights: {str(path)!r} is not a readable torch file (truncated or corrupted?); "
                       "expected a state dict saved with torch.save or a .safetensors file "
                       f"({type(cause or err).__name__}: {detail})") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict a weights file holds, unwrapped from a training checkpoint if nested.

    Raises:
        CLIError: for a missing, unreadable or unsafe file, or one that holds no state dict.
    """
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"--weights: {str(path)!r} is a folder; expected a state dict file (.pt, .pth, "
                       ".safetensors). A transformers model folder is a model spec: hf:{path}.")
    if not path.is_file():
        raise CLIError(f"--weights: no such file {str(path)!r}.")
    obj = _read(path)
    if _is_state_dict(obj):
        return dict(obj)
    for key in NESTED_KEYS:
        if isinstance(obj, Mapping) and _is_state_dict(obj.get(key)):
            logger.info("--weights: reading the state dict under %r of %s", key, path)
            return dict(obj[key])
    found = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping)
             else f"a {type(obj).__name__}")
    raise CLIError(f"--weights: {str(path)!r} holds {found}, not a state dict (names -> tensors), "
                   f"neither at the top nor under {list(NESTED_KEYS)}. Save model.state_dict().")


def _matched(state: dict[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """``state`` with the wrapper prefix stripped whose keys overlap ``expected`` the most."""
    best, best_overlap = state, len(expected & state.keys())
    for prefix in STRIPPED_PREFIXES:
        if best_overlap == len(expected) == len(best):
            break
        if not any(k.startswith(prefix) for k in state):
            continue
        stripped = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
        overlap = len(expected & stripped.keys())
        if overlap > best_overlap:
            best, best_overlap = stripped, overlap
            logger.info("--weights: stripped the prefix %r from the file's keys", prefix)
    return best


def _mismatch_message(path: Path, state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> str | None:
    """What keeps ``state`` from loading strictly into a model with state ``own``, with the fix."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
              if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return None

    def few(items: list[Any]) -> str:
        more = f", ... ({len(items)} in all)" if len(items) > _SHOWN else ""
        return ", ".join(map(str, items[:_SHOWN])) + more

    sizes = [f"{k} file {f} vs model {m}" for k, f, m in shapes]
    parts = [f"missing keys: {few(missing)}" if missing else "",
             f"unexpected keys: {few(unexpected)}" if unexpected else "",
             f"shape mismatches: {few(sizes)}" if shapes else ""]
    fixes = []
    heads = [(k, f) for k, f, m in shapes if len(f) == len(m) and f[1:] == m[1:] and f[0] != m[0]]
    if heads:  # a classifier of another size: its last weight (fc.weight, head.weight, ...)
        key, file_shape = ([h for h in heads if h[0].endswith("weight")] or heads)[-1]
        fixes.append(f"pass --num-classes {file_shape[0]} to match the fine-tuned head ({key} has "
                     f"{file_shape[0]} outputs in the file)")
    if missing or unexpected:
        fixes.append("check that the file is for this architecture (the prefixes "
                     f"{', '.join(STRIPPED_PREFIXES)} are stripped automatically)")
    return (f"--weights: {str(path)!r} does not fit the model: {'; '.join(p for p in parts if p)}. "
            f"To fix: {'; '.join(fixes)}.")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict of ``path`` into ``model`` strictly (in place); returns ``model``.

    Raises:
        CLIError: for an unreadable file, or keys and shapes that do not match the model (the
            message lists a few and how to fix them, e.g. ``--num-classes``).
    """
    path = Path(path)
    own = model.state_dict()
    state = _matched(read_state_dict(path), set(own))
    problem = _mismatch_message(path, state, own)
    if problem:
        raise CLIError(problem)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # e.g. a dtype that cannot be copied
        raise CLIError(f"--weights: loading {str(path)!r} failed: {err}") from None
    logger.info("--weights: loaded %d tensors from %s", len(state), path)
    return model
