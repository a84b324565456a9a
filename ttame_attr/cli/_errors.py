"""The error the command line turns into exit status 2 and one line on stderr."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user error: bad option, missing path, unknown model. Printed as one line, exit 2."""
