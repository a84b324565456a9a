"""``python -m ttame_attr.cli``: the same as the ``ttame`` command."""

import sys

from ttame_attr.cli import main

if __name__ == "__main__":
    sys.exit(main())
