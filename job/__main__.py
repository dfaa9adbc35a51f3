"""``python -m job``: see :mod:`job.cli`."""

import sys

from job.cli import main

sys.exit(main())
