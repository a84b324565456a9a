"""What the CLI tests share: running ``ttame`` in-process and checking a usage error."""

from __future__ import annotations

import pytest

from ttame_attr.cli import main

#: The tiny CNN of ``cli_tiny_models.py`` and the input size it is built for.
CNN = "cli_tiny_models:tiny_cnn"
SIZE = ["--input-size", "32"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ttame *argv`` in this process: exit status, stdout, stderr."""
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_usage_error(rc: int, err: str, *fragments: str) -> None:
    """Exit status 2, one line on stderr, no traceback, and every fragment in that line."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
