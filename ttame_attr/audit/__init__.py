"""Audit a classifier with its explanations: the shortcuts it learned, class by class.

:func:`audit` reads a store of explanations (:class:`~ttame_attr.ExplanationStore`, written by
``explain_dataset`` or ``ttame explain --store``) and returns an :class:`AuditReport`, which
writes ``audit.json`` and a self-contained ``audit.html``. Grouping the explanations needs
scikit-learn (``pip install "ttame-attr[audit]"``), the report's pictures matplotlib.

Example:
    >>> from ttame_attr import audit
    >>> report = audit("explanations/")  # doctest: +SKIP
    >>> [c["class"] for c in report.flagged]  # doctest: +SKIP
    [3]
    >>> report.write("audit/")  # doctest: +SKIP
"""

from ttame_attr.audit._api import audit
from ttame_attr.audit._report import AUDIT_FORMAT_VERSION, AuditReport

__all__ = ["AUDIT_FORMAT_VERSION", "AuditReport", "audit"]
