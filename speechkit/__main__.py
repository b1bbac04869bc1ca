"""``python -m speechkit`` is the same as the ``speechkit`` console script."""

import sys

from speechkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
