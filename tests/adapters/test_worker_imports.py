"""The code the Flink workers import stays free of numpy and everything built on it.

In thread mode all operators of a TaskManager share one embedded CPython (PEMJA). A job
hung for good when one operator finalised its interpreter state while another was still
importing numpy in its open() (seen with a small bounded input: the source finished first).
The workers' import path is therefore pure Python; numpy-based code (River, scikit-learn,
pandas) stays in the client, the tests and the benchmarks.
"""

from __future__ import annotations

import subprocess
import sys

WORKER_MODULES = ["udfs.detect", "udfs.parse", "udfs.summaries", "udfs.watermarks", "state.descriptors", "state.codec"]
HEAVY = ["numpy", "river", "scipy", "pandas", "sklearn"]


def test_worker_modules_import_no_numpy_stack() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in WORKER_MODULES)
        + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
