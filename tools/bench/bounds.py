"""What bounds the job: Flink's own cost per event, and Python embedded in the JVM."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pyflink.datastream import KeyedProcessFunction, MapFunction

from tools.bench.flink import bench_config, bench_environment, discard, execute_job
from tools.bench.loops import detect_one
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import DeadLetter, ParseConfig, parse_line

# -- what bounds the job: Flink's own cost per event, and Python embedded in the JVM ----------


class NullDetect(KeyedProcessFunction):  # type: ignore[misc]
    """The floor: a keyed Python operator that takes its events and does nothing with them.
    ``count_dir``: on close, write how many it took to a file there (tests)."""

    def __init__(self, count_dir: str | None = None) -> None:
        self._count_dir = count_dir
        self._n = 0

    def process_element(self, value: Any, ctx: Any) -> Iterable[Any]:
        group = value[1] if isinstance(value, tuple) else None
        self._n += 1 if group is None or isinstance(group, str) else len(group)  # (a line group)
        return ()

    def close(self) -> None:
        if self._count_dir is not None:
            Path(self._count_dir, f"count-{os.getpid()}-{id(self)}").write_text(str(self._n))


FLOOR_SHAPES = ("pipeline", "unbatched", "single")


def run_floor_job(path: Path, shape: str, name: str, count_dir: str | None = None) -> dict[str, float]:
    """A job of the given shape whose keyed operator is :class:`NullDetect`: what Flink and
    PyFlink cost per event before any detection (thread mode, parallelism 1).

    ``pipeline``: the job's own shape (:func:`job.pipeline.build_pipeline`): the front (Flink
    SQL reads the entity and timestamp of a line in Java), timestamps, an entity's lines
    grouped (:func:`job.pipeline.batch_lines`, when its jar is built) and keys in Java, the
    keyed Python operator (which, in the job, parses the lines).
    ``unbatched``: the same with one Python call per line (``execution.batch_lines=1``).
    ``single``: the least a keyed Python operator can cost on PyFlink: the entity read from the
    raw line in Java (Flink SQL ``JSON_VALUE``), keyed in Java, one Python operator, no
    timestamps or watermarks.
    ``count_dir``: see :class:`NullDetect`.
    """
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    from job.pipeline import file_source, front, key_lines, with_event_time

    if shape not in FLOOR_SHAPES:
        raise ValueError(f"unknown floor shape {shape!r} (known: {', '.join(FLOOR_SHAPES)})")
    cfg = bench_config([])
    env = bench_environment(cfg, ship_job=True)
    source = file_source(env, str(path))
    if shape in ("pipeline", "unbatched"):
        lines = front(env, source, cfg.parse)
        timed = with_event_time(
            env, lines, cfg.detector.lateness.max_out_of_orderness_ms, cfg.execution
        )
        keyed = key_lines(env, timed, cfg.execution, grouped=shape == "pipeline")
    else:
        from pyflink.table import StreamTableEnvironment

        t_env = StreamTableEnvironment.create(env)
        t_env.create_temporary_view("lines_in", source)
        table = t_env.sql_query("SELECT JSON_VALUE(f0, '$.entity') AS entity, f0 AS line FROM lines_in")
        rows = t_env.to_append_stream(table, Types.ROW([Types.STRING(), Types.STRING()]))
        j_keyed = rows._j_data_stream.keyBy(
            get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
        )
        keyed = KeyedStream(j_keyed, Types.STRING(), rows)
    discard(keyed.process(NullDetect(count_dir), output_type=Types.STRING()).name("null-detect"), "null")
    return execute_job(env, name)


def split_core_loop(lines: Sequence[str], cfg: DetectorConfig, reps: int) -> dict[str, float]:
    """The plain core loop in two passes, parse then detect (``on_event``, alerts to JSON):
    this thread's CPU microseconds per event of each, the fastest of ``reps`` passes."""
    pcfg = ParseConfig()
    best_parse = best_detect = math.inf
    for _ in range(reps):
        t0 = time.thread_time()
        recs = [parse_line(line, pcfg) for line in lines]
        t1 = time.thread_time()
        detectors: dict[str, EntityDetector] = {}
        for rec in recs:
            if not isinstance(rec, DeadLetter):
                detect_one(detectors, rec, cfg)
        t2 = time.thread_time()
        best_parse = min(best_parse, t1 - t0)
        best_detect = min(best_detect, t2 - t1)
    n = max(len(lines), 1)
    return {"events": len(lines), "parse_us": best_parse / n * 1e6, "detect_us": best_detect / n * 1e6}


class EmbeddedCore(MapFunction):  # type: ignore[misc]
    """Runs :func:`split_core_loop` inside a thread-mode task: Python embedded in the JVM."""

    def map(self, value: str) -> str:
        req = json.loads(value)
        lines = Path(req["path"]).read_text().splitlines()
        return json.dumps(split_core_loop(lines, DetectorConfig(), int(req["reps"])))


def run_embedded_core(path: Path, reps: int) -> dict[str, float]:
    """:func:`split_core_loop` over the events in ``path``, run by a thread-mode task."""
    from pyflink.common.typeinfo import Types

    env = bench_environment(bench_config([]), ship_job=True)
    req = json.dumps({"path": str(path), "reps": reps})
    stream = env.from_collection([req], type_info=Types.STRING())
    with stream.map(EmbeddedCore(), output_type=Types.STRING()).execute_and_collect() as results:
        out = [json.loads(r) for r in results]
    if len(out) != 1:
        raise RuntimeError(f"the embedded core loop returned {len(out)} results, expected 1")
    return dict(out[0])


def core_us(split: dict[str, float]) -> float:
    """Microseconds per event of a :func:`split_core_loop` result: parse plus detect."""
    return split["parse_us"] + split["detect_us"]


def embedded_factor(embedded: dict[str, Any]) -> float | None:
    """The core loop's cost inside a thread-mode task over its cost in this process (parse +
    detect), from :func:`split_core_loop` results under ``in_job`` and ``in_process``."""
    inside, outside = embedded.get("in_job"), embedded.get("in_process")
    if not inside or not outside:
        return None
    return core_us(inside) / core_us(outside)


def job_bounds(
    plain_eps_per_cpu_s: float | None, floor: Sequence[dict[str, Any]], embedded: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Per floor shape, the most a job of that shape could reach running this core, per
    CPU-second: its floor's cost per event plus the core's cost embedded in the JVM, with
    nothing for the operator's own work (state, timers, metrics, outputs)::

        cost = 1 / floor_eps_per_cpu_s + factor * core_cost

    ``core_cost = 1 / plain_eps_per_cpu_s`` (the plain core loop), ``factor`` the embedded
    core loop's cost over the same loop's in this process; neither floor parses, so the whole
    core (parse and detect) runs behind it. Returns ``{shape: {eps_per_cpu_s, vs_plain,
    floor_us, core_us}}`` (the costs in microseconds); empty when a measurement is missing."""
    factor = embedded_factor(embedded)
    if not plain_eps_per_cpu_s or factor is None:
        return {}
    plain_us = 1e6 / plain_eps_per_cpu_s
    run_us = factor * plain_us
    bounds = {}
    for row in floor:
        if not row.get("eps_per_cpu_s"):
            continue
        floor_us = 1e6 / row["eps_per_cpu_s"]
        bounds[row["shape"]] = {
            "floor_us": floor_us,
            "core_us": run_us,
            "eps_per_cpu_s": 1e6 / (floor_us + run_us),
            "vs_plain": plain_us / (floor_us + run_us),
        }
    return bounds


