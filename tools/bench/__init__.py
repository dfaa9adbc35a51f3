"""Benchmark: ``python -m job bench [--quick] [--out bench/results]`` (tools/bench/run.py).

One run, one machine, every number next to the numbers it is compared with. It measures:

1. **Plain loop** (no Flink): the detection core over the benchmark events in plain Python,
   ``core`` (``parse_line`` + ``EntityDetector.on_event`` with the detectors kept in a dict:
   the limit the job should approach, and the headline's "plain loop") and ``operator``
   (what the operator's Python does per event besides Flink's calls: the parse,
   ``on_event``, alerts to JSON, and ``encode(snapshot())`` on every
   ``execution.snapshot_every``-th event of an entity and the event pickled for the journal on
   the others, as udfs/detect.py does; job / ``operator`` is what Flink itself costs).
2. **The job** (``front (SQL) -> watermarks -> key_by -> detect``, :func:`job.pipeline.build_pipeline`)
   on a local MiniCluster, parallelism 1, file source (:func:`job.pipeline.file_source`), every
   output into Flink's Java ``DiscardingSink`` (nothing is collected), ``env.execute()``; thread
   and process mode; 1, 4 and 16 metrics per event.
3. **The naive baseline**: a River ``MinMaxScaler | HalfSpaceTrees(seed=42)`` pipeline kept in
   Flink ``ValueState`` (``PICKLED_BYTE_ARRAY``) and read + written on every event, same
   parse / watermarks / key_by, thread mode.
4. **Latency** at half the measured maximum rate (see :func:`run_latency`).
5. **State**: ``len(encode(det.snapshot()))`` per entity as history grows (plain Python), and a
   MiniCluster checkpoint of 1,000 (and in the full run 10,000) entities, from which Flink's
   per-key overhead is derived; totals for 1k / 10k / 100k entities.
6. **Standalone cluster** (full run only): throughput at parallelism 1 and 2
   (``scripts/cluster.sh start --taskmanagers 2``, one slot each).
7. **Profile** of the plain ``operator`` loop at 4 metrics (pyinstrument when installed,
   cProfile otherwise), as shares per module and per operator phase.
8. **What bounds the job** (``floor``): the job's shape with a keyed operator that does
   nothing (:class:`NullDetect`), and the least costly shape a keyed Python operator can have
   (keyed in Java from the raw line, one Python operator): Flink's and PyFlink's own cost per
   event. And the core loop run inside a thread-mode task against the same loop in this
   process: what Python embedded in the JVM costs. Together they bound what any job running
   this core can reach (:func:`job_bounds`).

Start-up is cancelled by the *marginal rate*: every job runs twice, over the first ``N1`` and
the first ``N2`` events of the same stream, and ``rate = (N2 - N1) / (t2 - t1)`` is the rate
of events ``N1..N2`` with the fixed costs (JVM work, job submission, task deployment, Python
worker start, the end-of-input flush) subtracted. The plain loop is timed at the same marks
over the same events. A throw-away job first absorbs the process's one-off costs (class
loading, JIT). Besides wall-clock, every job's CPU time (the JVM running the MiniCluster and
its child processes) gives *events per CPU-second*: on a machine shared with other work that
is the steadier "per core" figure, and ratios are given both ways.

Results go to ``<out>/<YYYY-MM-DD>.json`` and ``<out>/<YYYY-MM-DD>.md``; the ratios are printed.
"""

from tools.bench.bounds import FLOOR_SHAPES, job_bounds, run_embedded_core, run_floor_job
from tools.bench.common import REQUIRED_KEYS, SNAPSHOT_EVERY, T0_MS, TARGETS
from tools.bench.flink import bench_config, bench_environment, run_detect_job
from tools.bench.latency import latency_stats
from tools.bench.loops import measure_plain, operator_loop, plain_loop
from tools.bench.machine import compiled_modules
from tools.bench.plan import Plan
from tools.bench.render import build_report, render_markdown
from tools.bench.run import main
from tools.bench.state_size import state_growth, steady_state_hours
from tools.bench.stats import fastest, fixed_cost, marginal_rate, percentiles, ratio
from tools.bench.streams import entity_name, event_index, generate_events, write_lines

__all__ = [
    "FLOOR_SHAPES",
    "REQUIRED_KEYS",
    "SNAPSHOT_EVERY",
    "T0_MS",
    "TARGETS",
    "Plan",
    "bench_config",
    "bench_environment",
    "build_report",
    "compiled_modules",
    "entity_name",
    "event_index",
    "fastest",
    "fixed_cost",
    "generate_events",
    "job_bounds",
    "latency_stats",
    "main",
    "marginal_rate",
    "measure_plain",
    "operator_loop",
    "percentiles",
    "plain_loop",
    "ratio",
    "render_markdown",
    "run_embedded_core",
    "run_floor_job",
    "run_detect_job",
    "state_growth",
    "steady_state_hours",
    "write_lines",
]
