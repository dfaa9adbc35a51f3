"""Flink: the environment, a discarding sink, CPU accounting, the job and the naive job."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from tools.bench.common import PROJECT_ROOT
from tools.bench.loops import new_river_model
from udfs.parse import payload_event

# -- Flink: environment, sink, CPU accounting --------------------------------------------------


def discarding_sink() -> Any:
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def discard(stream: Any, name: str) -> None:
    stream.sink_to(discarding_sink()).name(f"discard-{name}").uid(f"discard-{name}")


def _jvm_pid() -> int:
    from pyflink.java_gateway import get_gateway

    return int(get_gateway().jvm.java.lang.ProcessHandle.current().pid())


def _proc_stat(pid: int) -> tuple[int, int]:
    """``(ppid, utime + stime in clock ticks)`` of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


class CpuMeter:
    """CPU time of processes and of every descendant they start, while a call runs (Linux).

    The descendants (process mode's Beam workers, started through a shell script) are sampled
    every ``interval`` s, each counted at its last sample: a worker killed at the end of a job
    is never reaped into the JVM's ``cutime``, so ``cutime`` would miss it. What a descendant
    spends after its last sample (at most ``interval`` s of its shutdown) is missed, the same
    in both runs of a marginal-rate pair.
    """

    def __init__(self, pid: int | Sequence[int], interval: float = 0.25) -> None:
        import threading

        self.pids = [pid] if isinstance(pid, int) else list(pid)
        self.interval = interval
        self._stop = threading.Event()
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool = False) -> None:
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stats[int(entry)] = _proc_stat(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
        children: dict[int, list[int]] = {}
        for p, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(p)
        todo = list(self.pids)
        while todo:
            p = todo.pop()
            if p not in stats:
                continue
            ticks = stats[p][1]
            self._last[p] = ticks
            self._first.setdefault(p, ticks if first else 0)
            todo.extend(children.get(p, ()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def read(self) -> float:
        """CPU seconds so far (sampled now)."""
        self._sample()
        return self.seconds

    @property
    def seconds(self) -> float:
        ticks = sum(self._last[p] - self._first[p] for p in self._last)
        return ticks / os.sysconf("SC_CLK_TCK")


def bench_environment(cfg: Any, *, ship_job: bool = False, conf: dict[str, str] | None = None) -> Any:
    from pyflink.common import Configuration

    from job.pipeline import create_environment

    env = create_environment(cfg)
    if ship_job:  # the harness operators live in tools.bench and read the job's configuration
        env.add_python_file(str(PROJECT_ROOT / "job"))
        env.add_python_file(str(PROJECT_ROOT / "tools"))
    if conf:
        c = Configuration()
        for k, v in conf.items():
            c.set_string(k, v)
        env.configure(c)
    return env


def bench_config(overrides: Sequence[str]) -> Any:
    from job.config import load_config

    return load_config(None, list(overrides))


class JobTimeout(RuntimeError):
    """A benchmark job did not finish in time (it was cancelled)."""


JOB_TIMEOUT_S = 900.0


def execute_job(env: Any, name: str, timeout_s: float | None = None) -> dict[str, float]:
    """``env.execute`` with a deadline: a job past it is cancelled and :class:`JobTimeout` raised."""
    timeout_s = JOB_TIMEOUT_S if timeout_s is None else timeout_s
    with CpuMeter(_jvm_pid()) as cpu:
        w0 = time.perf_counter()
        client = env.execute_async(name)
        done = client.get_job_execution_result()
        while not done.done():
            if time.perf_counter() - w0 > timeout_s:
                try:
                    client.cancel().result()
                except Exception:  # already finished or the cluster is gone
                    pass
                raise JobTimeout(f"job {name!r} did not finish within {timeout_s:.0f} s: cancelled")
            time.sleep(0.02)
        result = done.result()
        wall = time.perf_counter() - w0
    return {
        "wall_s": wall,
        "cpu_s": cpu.seconds,
        "net_runtime_s": result.get_net_runtime() / 1000.0,
    }


def run_detect_job(path: Path, overrides: Sequence[str], name: str) -> dict[str, float]:
    """The job as `python -m job run` wires it, every output into a DiscardingSink."""
    from job.pipeline import build_pipeline, file_source

    cfg = bench_config(overrides)
    env = bench_environment(cfg)
    for out_name, stream in build_pipeline(env, cfg, file_source(env, str(path))).items():
        discard(stream, out_name)
    return execute_job(env, name)


# -- harness operators (shipped with the job package) ----------------------------------------


class NaiveRiverDetect(KeyedProcessFunction):  # type: ignore[misc]
    """The naive baseline: a River pipeline pickled in ValueState, read + written per event."""

    def __init__(self, threshold: float = 0.95) -> None:
        self._threshold = threshold
        self._state: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        from pyflink.common.typeinfo import Types
        from pyflink.datastream.state import ValueStateDescriptor

        self._state = runtime_context.get_state(
            ValueStateDescriptor("river-model", Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, value: Any, ctx: Any) -> Iterator[str]:
        entity, ts_ms, payload = value
        x = payload_event(entity, payload).metrics
        model = self._state.value()
        if model is None:
            model = new_river_model()
        score = model.score_one(x)
        model.learn_one(x)
        self._state.update(model)
        if score > self._threshold:
            yield json.dumps({"entity": entity, "ts_ms": ts_ms, "score": score})


def run_naive_job(path: Path, name: str) -> dict[str, float]:
    from pyflink.common.typeinfo import Types

    from job.pipeline import file_source
    from udfs.parse import ParseEvents
    from udfs.tags import DEAD_LETTER_TAG, EVENT_TYPE
    from udfs.watermarks import event_watermark_strategy

    cfg = bench_config([])
    env = bench_environment(cfg, ship_job=True)
    parsed = (
        file_source(env, str(path))
        .process(ParseEvents(cfg.parse), output_type=EVENT_TYPE)
        .name("parse")
        .uid("parse")
    )
    detected = (
        parsed.assign_timestamps_and_watermarks(
            event_watermark_strategy(cfg.detector.lateness.max_out_of_orderness_ms)
        )
        .name("watermarks")
        .uid("watermarks")
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .process(NaiveRiverDetect(), output_type=Types.STRING())
        .name("naive-river")
        .uid("naive-river")
    )
    discard(detected, "alerts")
    discard(parsed.get_side_output(DEAD_LETTER_TAG), "dead_letter")
    return execute_job(env, name)


