"""``python -m tools.report``: the same as ``python -m job report``."""

import sys

from tools.report import main

if __name__ == "__main__":
    sys.exit(main())
