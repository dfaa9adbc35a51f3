"""In a revision's tree: the job over the first ``n`` of ``n2`` benchmark events; prints the
timings as JSON (``tools/bench_ab.py``).

    ab_run.py METRICS N2 N PATH [override ...]
"""

import json
import sys
from pathlib import Path

try:
    from tools.bench import generate_events, run_detect_job, write_lines
except ImportError:  # a revision from before the tools package
    from job.bench import generate_events, run_detect_job, write_lines  # type: ignore[no-redef]

metrics, n2, n = (int(x) for x in sys.argv[1:4])
lines = generate_events(n2, metrics=metrics, entities=16)
path = write_lines(Path(sys.argv[4]), lines[:n])
print(json.dumps(run_detect_job(path, sys.argv[5:], "ab")))
