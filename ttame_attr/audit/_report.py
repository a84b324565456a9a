"""The audit's result, :class:`AuditReport`, and its ``audit.json``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AUDIT_FORMAT_VERSION", "AuditReport"]

logger = logging.getLogger(__name__)

#: Version of the layout of ``audit.json`` (its ``"format_version"``).
AUDIT_FORMAT_VERSION = 1


@dataclass
class AuditReport:
    """What :func:`ttame_attr.audit` found, class by class; write it with :meth:`write`.

    Attributes:
        classes: one dict per predicted class, most suspicious first: ``class``, ``name`` (or
            ``None``), ``images``, ``score``, ``flagged``, ``reasons``, ``signals`` and ``groups``
            (see :doc:`/audit` for every key).
        images: one dict per image, most suspicious first (at most ``max_images``): ``index``,
            ``path`` (or ``None``), ``class``, ``score``, ``group`` and ``reasons``.
        options: the options the audit ran with.
        provenance: where the explanations came from (the store's manifest, without its shard
            list) and the package version that audited them.
        pictures: the arrays the HTML report draws (mean maps and example images of the classes
            it shows); not part of the JSON.
    """

    classes: list[dict[str, Any]]
    images: list[dict[str, Any]]
    options: dict[str, Any]
    provenance: dict[str, Any]
    pictures: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> list[dict[str, Any]]:
        """The classes whose score reaches the threshold (``options["threshold"]``)."""
        return [c for c in self.classes if c["flagged"]]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``audit.json``."""
        return {"format": "ttame_attr.audit", "format_version": AUDIT_FORMAT_VERSION,
                "options": self.options, "provenance": self.provenance,
                "summary": {"classes": len(self.classes), "flagged": [c["class"] for c in self.flagged],
                            "images": sum(c["images"] for c in self.classes),
                            "images_listed": len(self.images)},
                "classes": self.classes, "images": self.images}

    def write(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``out/audit.json`` and the self-contained ``out/audit.html``.

        Args:
            out: a folder, created if missing; files of these names in it are replaced.

        Returns:
            The paths of ``audit.json`` and ``audit.html``.

        Raises:
            ValueError: if ``out`` exists and is not a folder.
        """
        from ttame_attr.audit._html import write_html

        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"out: expected a folder for audit.json and audit.html, got the file {out}; "
                             "pass a folder path.")
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / "audit.json"
        tmp = out / "audit.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, json_path)
        html_path = write_html(self, out / "audit.html")
        logger.info("wrote %s and %s", json_path, html_path)
        return json_path, html_path
