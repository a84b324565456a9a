"""``ttame audit STORE --out DIR``: the audit of a classifier from a store of its explanations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ttame_attr.cli._errors import CLIError

__all__ = ["add_audit_parser", "cmd_audit"]


def add_audit_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ttame audit`` and its options to the subcommands ``sub``."""
    p = sub.add_parser("audit", help="audit a classifier from a store of its explanations: its shortcuts, "
                       "class by class", description="Find, per predicted class and from the maps alone, "
                       "groups of images explained the same way and signs of a shortcut (evidence at a "
                       "fixed spot, on the border, off the object); write DIR/audit.json and DIR/audit.html.")
    p.add_argument("store", help="an explanation store (`ttame explain --store` or explain_dataset)")
    p.add_argument("--out", default="ttame_audit",
                   help="folder for audit.json and audit.html (default ttame_audit)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="flag a class whose suspicion score reaches this (0-1, default 0.5)")
    p.add_argument("--grid", type=int, default=8,
                   help="side of the coarse grid the maps are compared on (default 8)")
    p.add_argument("--max-groups", type=int, default=4, help="most groups per class (1: no clustering)")
    p.add_argument("--min-group-size", type=int, default=5, help="fewest images in a group (default 5)")
    p.add_argument("--examples", type=int, default=6, help="images shown per group (default 6)")
    p.add_argument("--max-images", type=int, default=1000,
                   help="images listed in audit.json, most suspicious first (0: all; default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seeds the clustering")
    p.set_defaults(func="cmd_audit")
    return p


def cmd_audit(args: argparse.Namespace) -> int:
    """Run the audit and print the flagged classes."""
    from ttame_attr.audit import audit

    store = Path(args.store)
    if not store.exists():
        raise CLIError(f"store: {str(store)!r} does not exist; pass the folder written by "
                       "`ttame explain ... --store DIR`.")
    try:
        report = audit(store, grid=args.grid, max_groups=args.max_groups, min_group_size=args.min_group_size,
                       examples=args.examples, threshold=args.threshold,
                       max_images=args.max_images or None, seed=args.seed)
        json_path, html_path = report.write(args.out)
    except (TypeError, ValueError, ImportError) as err:
        raise CLIError(str(err)) from None
    n = sum(c["images"] for c in report.classes)
    print(f"audited {n} images of {len(report.classes)} predicted classes; "
          f"{len(report.flagged)} flagged (score >= {args.threshold:g})")
    for c in report.flagged:
        name = f" ({c['name']})" if c.get("name") else ""
        print(f"  class {c['class']}{name}: score {c['score']:.2f}: {c['reasons'][0]}")
    print(f"Report: {html_path.resolve()}\n(also {json_path})")
    return 0
