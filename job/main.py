"""Entry point for ``flink run -py job/main.py [run options]`` on a cluster.

Equivalent to ``python -m job run --set sink.writer=flink [run options]``: on a cluster the
file sink is Flink's ``FileSink`` on the TaskManagers, not the client (``--set
sink.writer=client`` brings the client's back). The project root is put on ``sys.path`` so
the ``job``, ``udfs`` and ``state`` packages import however the client was started.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", "--set", "sink.writer=flink", *sys.argv[1:]]))
