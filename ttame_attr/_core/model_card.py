"""The model card (``README.md``) of a head saved in the Hugging Face Hub format.

The card starts with the Hub's YAML metadata block (``library_name``, ``tags``, ``base_model``
when the backbone is on the Hub), then says what the head explains, how it was trained (from
``explainer.history``), the metrics the user passes, how to load it and the citation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CITATION", "model_card"]

CITATION = """@article{ntrougkas2024ttame,
  title   = {T-TAME: Trainable Attention Mechanism for Explaining Convolutional Networks and
             Vision Transformers},
  author  = {Ntrougkas, Mariano V. and Gkalelis, Nikolaos and Mezaris, Vasileios},
  journal = {IEEE Access},
  year    = {2024},
  note    = {arXiv:2403.04523}
}"""


def _front_matter(config: Mapping[str, Any]) -> str:
    lines = ["---", "library_name: ttame-attr", "tags:", "- explainability", "- saliency", "- t-tame",
             "- image-classification"]
    backbone = config.get("backbone") or ""
    if backbone.startswith(("hf:", "timm:")):
        # the Hub's base model: a repository id (timm's models live under timm/)
        repo = backbone[3:] if backbone.startswith("hf:") else "timm/" + backbone[5:]
        lines.append(f"base_model: {json.dumps(repo)}")
    return "\n".join([*lines, "---"])


def _training(history: Any, training_data: str | None) -> list[str]:
    lines = []
    if training_data:
        lines.append(f"- Training data: {training_data}")
    schedule = getattr(history, "schedule", None)
    epochs = list(getattr(history, "epochs", []) or [])
    if isinstance(schedule, Mapping):
        lines.append(
            f"- Schedule: {schedule.get('epochs')} epoch(s) of {schedule.get('steps_per_epoch')} steps "
            f"({schedule.get('total_steps')} steps), maximum learning rate {schedule.get('lr')}, "
            f"recipe {schedule.get('recipe')!r}"
        )
    if epochs:
        last = epochs[-1]
        lines.append(f"- Last epoch: loss {last.loss:.4g}, fidelity {last.fidelity:.3f} (the fraction of "
                     "masked images still classified as the clean image)")
    return lines or ["- Not recorded (the head was not trained in this session, or loaded from a file)."]


def model_card(config: Mapping[str, Any], *, history: Any = None, metrics: Mapping[str, Any] | None = None,
               training_data: str | None = None, repo_id: str | None = None) -> str:
    """The ``README.md`` text of a saved head.

    Args:
        config: what ``config.json`` holds.
        history: ``explainer.history`` (the schedule and last epoch are reported), or ``None``.
        metrics: ``{name: value}`` to report (e.g. the output of :func:`ttame_attr.evaluate`).
        training_data: a sentence on the training images (how many, from where).
        repo_id: the repository's name, for the loading example.
    """
    cls = config.get("model_class_path") or config.get("model_class")
    known = config.get("backbone")
    backbone = f"`{known}`" if known else f"a {config.get('model_class', 'model')}"
    where = repo_id or "ORG/NAME"
    rows = [f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |"
            for name, value in (metrics or {}).items()]
    metric_text = ("| metric | value |\n|---|---|\n" + "\n".join(rows)) if rows else "Not given."
    return f"""{_front_matter(config)}

# T-TAME explanation head for {backbone.strip("`")}

A trained [T-TAME](https://arxiv.org/abs/2403.04523) attention head: it explains the predictions
of the classifier {backbone} (class `{cls}`) with one class saliency map per image, in the
classifier's own forward pass. The classifier's weights are
not in this repository; the head only explains the weights it was trained on (their fingerprint
is in `config.json`, and loading warns when the model differs).

## Head

- Layers: {", ".join(f"`{name}`" for name in config.get("layers", []))}
- Classes: {config.get("num_classes")}, input size {tuple(config.get("input_size", ()))}, map size \
{tuple(config.get("map_size") or ())}
- Masking during training: {config.get("mask_space")} space
- Written by ttame_attr {config.get("package_version")}

## Training

{chr(10).join(_training(history, training_data))}

## Metrics

{metric_text}

## Usage

```python
from ttame_attr import TTAME

explainer = TTAME.from_pretrained("{where}", model)  # pip install "ttame-attr[hub]"
maps = explainer.attribute(images)  # (N, 1, H, W), the predicted classes
```

or `ttame explain MODEL IMAGES --head hub:{where}`.

## Citation

```bibtex
{CITATION}
```
"""
