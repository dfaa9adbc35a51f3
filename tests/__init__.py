"""The project's tests, arranged like the code: ``core`` (the pure detection core and the
state codec), ``adapters`` (the Flink adapters driven by fakes, the CLI, configuration, files),
``minicluster`` (the real job on a local MiniCluster), ``offline`` (the offline tools: bench, eval, report, tune,
train-filter, the upgrade check), ``e2e`` (a real broker and a standalone cluster) and
``layouts`` (state written by earlier releases). Shared helpers: :mod:`tests.fakes` (the
Flink runtime's fakes and the operator harness), :mod:`tests.configs`, :mod:`tests.outputs`.

No folder here is named like a top-level package (``job``, ``tools``, ``udfs``, ``state``):
MiniCluster tests ship ``tests/`` to the Python workers, where it is on the import path.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
