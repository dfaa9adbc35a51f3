"""Entry point for ``flink run -py job/main.py [run options]`` on a cluster.

Equivalent to ``python -m job run [run options]``: the project root is put on ``sys.path``
so the ``job``, ``udfs`` and ``state`` packages import however the client was started.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
