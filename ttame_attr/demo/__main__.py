"""``python -m ttame_attr.demo [--out DIR] [--quick] [--seed N]``."""

import sys

from ttame_attr.demo import main

if __name__ == "__main__":
    sys.exit(main())
