"""Benchmark: ``python -m job bench [--quick] [--out bench/results]``.

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

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as _dt
import glob
import importlib.metadata
import json
import math
import os
import platform
import pstats
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # `flink run -py job/bench.py` (the standalone-cluster part)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyflink.datastream import KeyedProcessFunction, MapFunction, RuntimeContext

from job.config import ExecutionConfig, SinkConfig
from state.codec import decode, encode
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import DeadLetter, Event, ParseConfig, parse_line
from udfs.core.feedback import parse_event_or_verdict
from udfs.detect import entry_size
from udfs.parse import handoff, payload_event

__all__ = [
    "REQUIRED_KEYS",
    "Plan",
    "build_report",
    "event_index",
    "generate_events",
    "main",
    "marginal_rate",
    "percentiles",
    "plain_loop",
    "render_markdown",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ENTITY_OFFSET_MS = 37  # entity e reports at step * interval + e * 37 ms: distinct timestamps
HEADLINE_METRICS = 4
# The job's expected rate as a share of the plain operator loop's (sizes its runs).
JOB_SHARE = 0.4
# The latency job's rate (scores emitted, pace and arrivals maps) as a share of the job's.
LATENCY_JOB_SHARE = 0.6
# A null keyed operator's rate over the job's, per floor shape (sizes the floor runs).
FLOOR_SPEEDUP = {"pipeline": 8.0, "unbatched": 6.0, "single": 20.0}
FLOOR_FALLBACK_JOB_EPS = 3000.0  # when the thread part did not run
# The operator's journal length (udfs/detect.py): the snapshot is encoded on every this many
# writes of an entity.
SNAPSHOT_EVERY = ExecutionConfig().snapshot_every
# The plain loops compute what the job computes at its defaults: score records without their
# features (sink.emit_features=false), so only the features the scorer reads.
WITH_FEATURES = SinkConfig().emit_features
TARGETS = {
    "job_vs_plain": 0.70,
    "job_vs_naive": 100.0,
    "job_eps": 10_000.0,
    "state_bytes_per_entity": 32 * 1024,
}
REQUIRED_KEYS = (
    "job_eps",
    "plain_eps",
    "naive_eps",
    "job_vs_plain",
    "job_vs_naive",
    "latency_ms_p50",
    "latency_ms_p99",
    "state_bytes_per_entity",
    "machine",
)
METHOD = (
    "Marginal rate: each job runs over the first N1 and the first N2 events of the same "
    "stream; rate = (N2 - N1) / (t2 - t1), so the fixed costs of a run (job submission, task "
    "deployment, Python worker start, end-of-input flush) cancel out. t is the wall-clock time "
    "of env.execute(); cpu is the CPU time of the JVM that runs the MiniCluster and of its "
    "child processes over the same call (events per CPU-second = the per-core rate on a shared "
    "machine). The plain loop is timed at the same marks over the same events. With repeats, "
    "the fastest time of each size is used. A throw-away job absorbs the one-off costs first."
)


# -- the benchmark stream (pure) -------------------------------------------------------------


def metric_names(n: int) -> tuple[str, ...]:
    return tuple(f"m{i:02d}" for i in range(n))


def entity_name(e: int) -> str:
    return f"ent-{e:05d}"


def generate_events(
    n: int,
    *,
    metrics: int = HEADLINE_METRICS,
    entities: int = 16,
    seed: int = 42,
    start_ms: int = T0_MS,
    interval_ms: int = 20_000,
    spike_every: int = 997,
) -> list[str]:
    """``n`` JSON lines, deterministic for the arguments.

    Event ``i`` belongs to entity ``i % entities`` at ``start_ms + (i // entities) *
    interval_ms + entity * 37 ms`` (every entity in timestamp order, nothing late), with
    ``metrics`` metrics ``m00, m01, ...``: a per-entity level, a daily cycle and Gaussian
    noise; every ``spike_every``-th event has its first metric tripled (an anomaly now and
    then, so the alert path runs too). :func:`event_index` inverts the layout.

    Examples
    --------
    >>> generate_events(2, metrics=1, entities=2)[1]
    '{"entity":"ent-00001","ts":1767225600037,"metrics":{"m00":56.009}}'
    """
    rng = random.Random(seed)
    names = metric_names(metrics)
    levels = [[rng.uniform(10.0, 100.0) for _ in names] for _ in range(entities)]
    lines = []
    day_steps = 86_400_000 / interval_ms
    for i in range(n):
        e, step = i % entities, i // entities
        daily = math.sin(2.0 * math.pi * (step % day_steps) / day_steps)
        level = levels[e]
        values = {}
        for j, name in enumerate(names):
            x = level[j] * (1.0 + 0.2 * daily) + rng.gauss(0.0, 0.05 * level[j])
            if j == 0 and i % spike_every == spike_every - 1:
                x *= 3.0
            values[name] = round(x, 3)
        ev = {
            "entity": entity_name(e),
            "ts": start_ms + step * interval_ms + e * ENTITY_OFFSET_MS,
            "metrics": values,
        }
        lines.append(json.dumps(ev, separators=(",", ":")))
    return lines


def event_index(
    entity: str,
    ts_ms: int,
    *,
    entities: int = 16,
    start_ms: int = T0_MS,
    interval_ms: int = 20_000,
) -> int:
    """The position in :func:`generate_events` of the event of ``entity`` at ``ts_ms``."""
    e = int(entity.rsplit("-", 1)[1])
    step, rest = divmod(ts_ms - start_ms - e * ENTITY_OFFSET_MS, interval_ms)
    if rest or not 0 <= e < entities:
        raise ValueError(f"({entity!r}, {ts_ms}) is not an event of the benchmark stream")
    return step * entities + e


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# -- arithmetic (pure) -----------------------------------------------------------------------


def marginal_rate(n1: int, t1: float, n2: int, t2: float) -> float | None:
    """``(n2 - n1) / (t2 - t1)``: the rate of the extra events, fixed costs cancelled.

    ``None`` when the larger input did not take longer (noise swamped the signal: run longer).

    Examples
    --------
    >>> marginal_rate(1000, 7.0, 5000, 9.0)  # 4,000 more events in 2 more seconds
    2000.0
    """
    if n2 <= n1:
        raise ValueError(f"need n2 > n1, got n1={n1}, n2={n2}")
    if t2 <= t1:
        return None
    return (n2 - n1) / (t2 - t1)


def fixed_cost(n1: int, t1: float, rate: float | None) -> float | None:
    """What the marginal rate attributes to start-up and shut-down: ``t1 - n1 / rate``."""
    return None if not rate else t1 - n1 / rate


def fastest(samples: Iterable[tuple[int, float]]) -> dict[int, float]:
    """The smallest time per input size (noise on a shared machine only ever adds time)."""
    best: dict[int, float] = {}
    for n, t in samples:
        if n not in best or t < best[n]:
            best[n] = t
    return best


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Linear-interpolated percentiles (numpy's default method), ``qs`` in [0, 100].

    Examples
    --------
    >>> percentiles([1.0, 2.0, 3.0, 4.0], [50, 100])
    [2.5, 4.0]
    """
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    out = []
    for q in qs:
        pos = (len(xs) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


# -- plain-Python loops ------------------------------------------------------------------------


def _cpu_now() -> float:
    return time.process_time()


def _detector(detectors: dict[str, EntityDetector], entity: str, cfg: DetectorConfig) -> EntityDetector:
    """The entity's detector, kept in ``detectors`` (the operator's cache)."""
    det = detectors.get(entity)
    if det is None:
        det = detectors[entity] = EntityDetector(entity, cfg, WITH_FEATURES)
    return det


def _detect(detectors: dict[str, EntityDetector], rec: Event, cfg: DetectorConfig) -> None:
    """The core's work on one parsed event: its entity's detector decides it, and every
    record but a score goes to JSON (scores leave the job only on request)."""
    for kind, r in _detector(detectors, rec.entity, cfg).on_event(rec):
        if kind != "score":
            json.dumps(r, sort_keys=True)


def _core_loop(
    lines: Sequence[str], cfg: DetectorConfig, pcfg: ParseConfig, marks: Sequence[int]
) -> list[tuple[int, float, float]]:
    detectors: dict[str, EntityDetector] = {}
    dumps = json.dumps
    out = []
    todo = sorted(marks)
    w0, c0 = time.perf_counter(), _cpu_now()
    for i, line in enumerate(lines, 1):
        rec = parse_line(line, pcfg)
        if isinstance(rec, DeadLetter):
            dumps(rec.to_dict(), sort_keys=True)
        else:
            _detect(detectors, rec, cfg)
        if todo and i == todo[0]:
            out.append((i, time.perf_counter() - w0, _cpu_now() - c0))
            todo.pop(0)
    return out


def _operator_loop(
    lines: Sequence[str],
    cfg: DetectorConfig,
    pcfg: ParseConfig,
    marks: Sequence[int],
    snapshot_every: int = SNAPSHOT_EVERY,
    states_out: dict[str, bytes] | None = None,
) -> list[tuple[int, float, float]]:
    """What the job's Python does per event, without Flink (see DetectAnomalies): parse,
    ``on_event`` with the detectors kept (the operator's cache), the snapshot encoded on every
    ``snapshot_every``-th event of an entity and the event pickled for the journal on the
    others, alerts to JSON. ``states_out``: each entity's encoded state at the end (what the
    operator stores)."""
    detectors: dict[str, EntityDetector] = {}
    writes: dict[str, int] = {}
    dumps = json.dumps
    out = []
    todo = sorted(marks)
    w0, c0 = time.perf_counter(), _cpu_now()
    for i, line in enumerate(lines, 1):
        rec = parse_event_or_verdict(line, pcfg)  # DetectAnomalies.process_element
        if isinstance(rec, DeadLetter):
            dumps(rec.to_dict(), sort_keys=True)
        elif isinstance(rec, Event):
            det = _detector(detectors, rec.entity, cfg)
            outputs = det.on_event(rec)
            n = writes.get(rec.entity, 0)
            if n % snapshot_every == 0:
                encode(det.snapshot())
            else:
                handoff(rec)  # the journal's entry
            writes[rec.entity] = n + 1
            for kind, r in outputs:
                if kind != "score":
                    dumps(r, sort_keys=True)
        if todo and i == todo[0]:
            out.append((i, time.perf_counter() - w0, _cpu_now() - c0))
            todo.pop(0)
    if states_out is not None:
        states_out.update((e, encode(d.snapshot())) for e, d in detectors.items())
    return out


def plain_loop(
    lines: Sequence[str],
    cfg: DetectorConfig,
    *,
    codec: bool,
    marks: Sequence[int],
    pcfg: ParseConfig | None = None,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> list[tuple[int, float, float]]:
    """Run the core over ``lines``; ``(events done, wall s, cpu s)`` at each of ``marks``.
    ``codec``: the operator's loop (see :func:`_operator_loop`)."""
    if not codec:
        return _core_loop(lines, cfg, pcfg or ParseConfig(), marks)
    return _operator_loop(lines, cfg, pcfg or ParseConfig(), marks, snapshot_every)


def _new_river_model() -> Any:
    from river import anomaly, compose, preprocessing

    return compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))


def naive_plain_loop(lines: Sequence[str], marks: Sequence[int]) -> list[tuple[int, float, float]]:
    """The naive baseline without Flink: the River pipeline pickled + unpickled per event."""
    import pickle

    states: dict[str, bytes] = {}
    out = []
    todo = sorted(marks)
    w0, c0 = time.perf_counter(), _cpu_now()
    for i, line in enumerate(lines, 1):
        obj = json.loads(line)
        stored = states.get(obj["entity"])
        model = _new_river_model() if stored is None else pickle.loads(stored)
        x = obj["metrics"]
        model.score_one(x)
        model.learn_one(x)
        states[obj["entity"]] = pickle.dumps(model)
        if todo and i == todo[0]:
            out.append((i, time.perf_counter() - w0, _cpu_now() - c0))
            todo.pop(0)
    return out


def measure_plain(
    lines: Sequence[str], cfg: DetectorConfig, n1: int, n2: int, *, codec: bool, repeats: int
) -> dict[str, Any]:
    """Marginal rate of the plain loop over events ``n1..n2`` (fastest of ``repeats``)."""
    walls, cpus = [], []
    for _ in range(repeats):
        (_, w1, c1), (_, w2, c2) = plain_loop(lines[:n2], cfg, codec=codec, marks=(n1, n2))
        walls.append(w2 - w1)
        cpus.append(c2 - c1)
    return {
        "n1": n1,
        "n2": n2,
        "eps": (n2 - n1) / min(walls),
        "eps_per_cpu_s": (n2 - n1) / max(min(cpus), 1e-9),
        "seconds": [round(w, 3) for w in walls],
    }


# -- state size (plain Python) --------------------------------------------------------------


def steady_state_hours(cfg: DetectorConfig, interval_ms: int = 20_000) -> float:
    """Event-time hours after which an entity's state stops growing, plus one hour.

    The longest window must be covered before the entity is warm; the drift monitor is fed
    only ready events (warm and ``min_calibration_events`` calibrated), and its state is
    complete once its warm-up, its reference and its first current window have passed
    (``udfs.core.drift``). At the defaults and 20 s: 24 h + 3,172 events, about 42.6 h.
    """
    longest = max(w.length_ms for w in cfg.features.windows)
    events = cfg.model.min_calibration_events
    if cfg.drift.enabled:
        d = cfg.drift
        events += d.warmup_events + d.reference_events + d.window_events
    return (longest + events * interval_ms) / 3_600_000 + 1.0


def state_growth(
    metrics: int, cfg: DetectorConfig, *, hours: float, interval_ms: int = 20_000
) -> dict[str, Any]:
    """Encoded state of one entity as its history grows; codec cost at the end.

    The state is bounded by construction (bucketed windows, fixed-size histograms and HST
    masses, a bounded order buffer, the drift monitor's fixed samples), so the value after
    :func:`steady_state_hours` is the steady state.
    """
    steps = int(hours * 3_600_000 / interval_ms)
    lines = generate_events(steps, metrics=metrics, entities=1, interval_ms=interval_ms, seed=7)
    det = EntityDetector(entity_name(0), cfg)
    pcfg = ParseConfig()
    checkpoints = {int(h * 3_600_000 / interval_ms): h for h in (1, 6, 12, 24) if h < hours}
    growth = []
    for i, line in enumerate(lines, 1):
        ev = parse_line(line, pcfg)
        assert isinstance(ev, Event)
        det.on_event(ev)
        if i in checkpoints:
            growth.append({"hours": checkpoints[i], "bytes": len(encode(det.snapshot()))})
    data = encode(det.snapshot())
    growth.append({"hours": hours, "bytes": len(data)})
    # The operator's state also holds up to SNAPSHOT_EVERY - 1 journaled event payloads.
    payload = max(
        entry_size(handoff(ev)[2])
        for ev in (parse_line(x, pcfg) for x in lines[-100:])
        if isinstance(ev, Event)
    )
    journal = (SNAPSHOT_EVERY - 1) * payload
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        encode(det.snapshot())
    enc_us = (time.perf_counter() - t) / reps * 1e6
    t = time.perf_counter()
    for _ in range(reps):
        EntityDetector.restore(det.entity, cfg, decode(data))
    dec_us = (time.perf_counter() - t) / reps * 1e6
    return {
        "metrics": metrics,
        "steady_bytes": len(data),
        "journal_max_bytes": journal,
        "steady_bytes_with_journal": len(data) + journal,
        "growth": growth,
        "snapshot_encode_us": round(enc_us, 1),
        "decode_restore_us": round(dec_us, 1),
        "events": steps,
    }


# -- profile of the plain loop ------------------------------------------------------------------

# Innermost frame whose file matches decides the module category of a sample.
_MODULE_CATEGORIES = (
    ("/json/", "json (stdlib)"),
    ("/pickle.py", "state codec (pickle)"),
    ("/copyreg.py", "state codec (pickle)"),
    ("state/codec.py", "state codec (pickle)"),
    ("udfs/core/features.py", "features"),
    ("udfs/core/hst.py", "HST"),
    ("udfs/core/calibration.py", "calibration"),
    ("udfs/core/alerts.py", "alert episodes"),
    ("udfs/core/events.py", "parsing (events.py)"),
    ("udfs/core/drift.py", "drift monitor"),
    ("udfs/core/detector.py", "detector glue (ordering, z, vectors)"),
    ("/datetime.py", "datetime"),
    ("job/bench.py", "harness loop"),
)


def _module_category(path: str) -> str | None:
    for needle, name in _MODULE_CATEGORIES:
        if needle in path:
            return name
    return None


def _shares(costs: dict[str, float]) -> list[dict[str, Any]]:
    total = sum(costs.values()) or 1.0
    rows = [
        {"what": k, "share": round(v / total, 4), "seconds": round(v, 4)}
        for k, v in costs.items()
    ]
    return sorted(rows, key=lambda r: -r["share"])


def profile_plain(lines: Sequence[str], cfg: DetectorConfig) -> dict[str, Any]:
    """Where the ``operator`` loop spends its time, by module and by operator phase.

    *Module*: each sample goes to the innermost frame of a known module (so ``json.loads``
    called by the parser counts as json, ``pickle`` under the codec as the codec). *Phase*:
    the call made by the loop body (``parse_line``, ``to_json``, ``loads``, ``decode``,
    ``restore``, ``on_event``, ``snapshot``, ``encode``).
    """
    try:
        import pyinstrument
    except ImportError:
        return _profile_cprofile(lines, cfg)
    profiler = pyinstrument.Profiler(interval=0.0005)
    profiler.start()
    _operator_loop(lines, cfg, ParseConfig(), ())
    session = profiler.stop()
    by_module: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for stack, seconds in session.frame_records:
        frames = [f.split("\x00") for f in stack]
        loop_at = next(
            (k for k, f in enumerate(frames) if f[0] == "_operator_loop"), None
        )
        if loop_at is None:
            continue
        inner = frames[loop_at + 1 :]
        phase = inner[0][0] if inner else "loop body"
        by_phase[phase] = by_phase.get(phase, 0.0) + seconds
        cat = "other"
        for f in reversed(inner):
            c = _module_category(f[1] if len(f) > 1 else "")
            if c:
                cat = c
                break
        else:
            if not inner:
                cat = "harness loop"
        by_module[cat] = by_module.get(cat, 0.0) + seconds
    return {
        "tool": f"pyinstrument {importlib.metadata.version('pyinstrument')} (sampling, 0.5 ms)",
        "events": len(lines),
        "metrics": HEADLINE_METRICS,
        "by_module": _shares(by_module),
        "by_phase": _shares(by_phase),
    }


def _profile_cprofile(lines: Sequence[str], cfg: DetectorConfig) -> dict[str, Any]:
    prof = cProfile.Profile()
    prof.enable()
    _operator_loop(lines, cfg, ParseConfig(), ())
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_module: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for (path, _line, func), (_cc, _nc, tottime, _cumtime, callers) in stats.items():
        cat = _module_category(path)
        if cat is None:
            name = func.lower()
            cat = (
                "state codec (pickle)"
                if "pickle" in name or "unpickler" in name
                else "json (stdlib)"
                if "json" in name or "scanner" in name or "encode_basestring" in name
                else "other (builtins)"
            )
        by_module[cat] = by_module.get(cat, 0.0) + tottime
        for (cpath, _cl, cfunc), caller_stats in callers.items():
            if cfunc == "_operator_loop" and cpath.endswith("bench.py"):
                by_phase[func] = by_phase.get(func, 0.0) + caller_stats[3]
    return {
        "tool": "cProfile (deterministic; call overhead inflates small functions)",
        "events": len(lines),
        "metrics": HEADLINE_METRICS,
        "by_module": _shares(by_module),
        "by_phase": _shares(by_phase),
    }


# -- machine ---------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = None
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "flink": _version("apache-flink"),
        "river": _version("river"),
        "numpy": _version("numpy"),
        "pyinstrument": _version("pyinstrument"),
        "java": java,
        "os": platform.platform(),
        "openblas_env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO"))
        },
        "loadavg_start": list(os.getloadavg()),
        "compiled_core": compiled_modules(),
        "line_batcher": _batcher_name(),
    }


def _batcher_name() -> str | None:
    """The line batcher's jar the job runs with (job/pipeline.py batch_lines), or None."""
    from job.jvm import operators_jar

    jar = operators_jar()
    return jar.name if jar is not None else None


def compiled_modules() -> list[str]:
    """The core modules running as compiled copies (scripts/build_native.py): their time
    shows under their callers in the profile (no Python frames)."""
    import importlib

    from udfs.core.native import HOT

    return [
        name
        for name, classes in HOT.items()
        if getattr(importlib.import_module(f"udfs.core.{name}"), classes[0]).__module__.startswith(
            "udfs.core._native."
        )
    ]


# -- Flink: environment, sink, CPU accounting --------------------------------------------------


def _discarding_sink() -> Any:
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def _discard(stream: Any, name: str) -> None:
    stream.sink_to(_discarding_sink()).name(f"discard-{name}").uid(f"discard-{name}")


def _jvm_pid() -> int:
    from pyflink.java_gateway import get_gateway

    return int(get_gateway().jvm.java.lang.ProcessHandle.current().pid())


def _proc_stat(pid: int) -> tuple[int, int]:
    """``(ppid, utime + stime in clock ticks)`` of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


class CpuMeter:
    """CPU time of a process and of every descendant it starts, while a call runs (Linux).

    The descendants (process mode's Beam workers, started through a shell script) are sampled
    every ``interval`` s, each counted at its last sample: a worker killed at the end of a job
    is never reaped into the JVM's ``cutime``, so ``cutime`` would miss it. What a descendant
    spends after its last sample (at most ``interval`` s of its shutdown) is missed, the same
    in both runs of a marginal-rate pair.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import threading

        self.pid = pid
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
        todo = [self.pid]
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

    @property
    def seconds(self) -> float:
        ticks = sum(self._last[p] - self._first[p] for p in self._last)
        return ticks / os.sysconf("SC_CLK_TCK")


def _environment(cfg: Any, *, ship_job: bool = False, conf: dict[str, str] | None = None) -> Any:
    from pyflink.common import Configuration

    from job.pipeline import create_environment

    env = create_environment(cfg)
    if ship_job:  # the harness operators below live in this module
        env.add_python_file(str(PROJECT_ROOT / "job"))
    if conf:
        c = Configuration()
        for k, v in conf.items():
            c.set_string(k, v)
        env.configure(c)
    return env


def _bench_config(overrides: Sequence[str]) -> Any:
    from job.config import load_config

    return load_config(None, list(overrides))


class JobTimeout(RuntimeError):
    """A benchmark job did not finish in time (it was cancelled)."""


JOB_TIMEOUT_S = 900.0


def _execute(env: Any, name: str, timeout_s: float | None = None) -> dict[str, float]:
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

    cfg = _bench_config(overrides)
    env = _environment(cfg)
    for out_name, stream in build_pipeline(env, cfg, file_source(env, str(path))).items():
        _discard(stream, out_name)
    return _execute(env, name)


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
            model = _new_river_model()
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

    cfg = _bench_config([])
    env = _environment(cfg, ship_job=True)
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
    _discard(detected, "alerts")
    _discard(parsed.get_side_output(DEAD_LETTER_TAG), "dead_letter")
    return _execute(env, name)


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
    cfg = _bench_config([])
    env = _environment(cfg, ship_job=True)
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
    _discard(keyed.process(NullDetect(count_dir), output_type=Types.STRING()).name("null-detect"), "null")
    return _execute(env, name)


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
                _detect(detectors, rec, cfg)
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

    env = _environment(_bench_config([]), ship_job=True)
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


class Pace(MapFunction):  # type: ignore[misc]
    """Lets records through at ``rate`` per second; records when each one left (wall clock)."""

    def __init__(self, rate: float, out_dir: str) -> None:
        self.rate = rate
        self.out_dir = out_dir
        self.sent: list[int] = []
        self.t0_ns = 0

    def map(self, value: str) -> str:
        if not self.sent:
            self.t0_ns = time.time_ns()
        due = self.t0_ns + int(len(self.sent) * 1e9 / self.rate)
        wait = due - time.time_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        self.sent.append(time.time_ns())
        return value

    def close(self) -> None:
        doc = {"t0_ns": self.t0_ns, "rate": self.rate, "sent_ns": self.sent}
        Path(self.out_dir, f"pace-{os.getpid()}-{id(self)}.json").write_text(json.dumps(doc))


class Arrivals(MapFunction):  # type: ignore[misc]
    """After detect: when each event's score record came out (wall clock), by event index."""

    def __init__(self, out_dir: str, entities: int, interval_ms: int) -> None:
        self.out_dir = out_dir
        self.entities = entities
        self.interval_ms = interval_ms
        self.seen: list[tuple[int, int]] = []

    def map(self, value: str) -> str:
        now = time.time_ns()
        rec = json.loads(value)
        i = event_index(
            rec["entity"], rec["ts_ms"], entities=self.entities, interval_ms=self.interval_ms
        )
        self.seen.append((i, now))
        return value

    def close(self) -> None:
        Path(self.out_dir, f"arrivals-{os.getpid()}-{id(self)}.json").write_text(
            json.dumps(self.seen)
        )


class SlowTail(MapFunction):  # type: ignore[misc]
    """Holds the job open (so checkpoints happen with every entity's state in place).

    Records starting with ``#tail`` are dropped; each one waits 20 ms until the file
    ``release`` exists in ``marker_dir`` (written by the client once a checkpoint taken after
    the last real record has completed). The first one writes ``tail-started``.
    """

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir
        self.started = False

    def map(self, value: str) -> str:
        if not value.startswith("#tail"):
            return value
        if not self.started:
            self.started = True
            Path(self.marker_dir, "tail-started").touch()
        if not Path(self.marker_dir, "release").exists():
            time.sleep(0.02)
        return ""


def run_latency_job(
    path: Path, rate: float, work: Path, *, entities: int, interval_ms: int, overrides: Sequence[str]
) -> dict[str, Any]:
    from pyflink.common.typeinfo import Types

    from job.pipeline import build_pipeline, file_source

    for f in work.glob("*.json"):
        f.unlink()
    cfg = _bench_config([*overrides, "sink.emit_scores=true"])
    env = _environment(cfg, ship_job=True)
    paced = (
        file_source(env, str(path))
        .map(Pace(rate, str(work)), output_type=Types.STRING())
        .name("pace")
        .uid("pace")
    )
    outputs = build_pipeline(env, cfg, paced)
    for out_name, stream in outputs.items():
        if out_name == "scores":
            stream = (
                stream.map(Arrivals(str(work), entities, interval_ms), output_type=Types.STRING())
                .name("arrivals")
                .uid("arrivals")
            )
        _discard(stream, out_name)
    timing = _execute(env, "bench-latency")
    return {"timing": timing, **_read_latency_files(work)}


def _read_latency_files(work: Path) -> dict[str, Any]:
    paces = [json.loads(p.read_text()) for p in work.glob("pace-*.json")]
    arrivals = [a for p in work.glob("arrivals-*.json") for a in json.loads(p.read_text())]
    if len(paces) != 1:
        raise RuntimeError(f"expected one pace record file in {work}, found {len(paces)}")
    return {"pace": paces[0], "arrivals": arrivals}


def latency_stats(
    pace: dict[str, Any], arrivals: Sequence[Sequence[int]], *, warmup_s: float, tail_events: int
) -> dict[str, Any]:
    """Latency percentiles from the pace and arrival records (pure).

    ``from_send``: arrival minus the moment the pace operator let the event go.
    ``from_schedule``: arrival minus when it was due (``t0 + i / rate``): also counts the time
    an event waited because the source had fallen behind (no coordinated omission).
    Events of the first ``warmup_s`` and the last ``tail_events`` (released by the
    end-of-input flush) are left out.
    """
    sent = pace["sent_ns"]
    t0, rate = pace["t0_ns"], pace["rate"]
    first = int(warmup_s * rate)
    last = len(sent) - tail_events
    from_send, from_schedule = [], []
    for i, arrived in arrivals:
        if first <= i < last and i < len(sent):
            from_send.append((arrived - sent[i]) / 1e6)
            from_schedule.append((arrived - (t0 + i * 1e9 / rate)) / 1e6)
    if not from_send:
        raise ValueError("no latency sample left after the warm-up and tail cuts")
    achieved = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9) if len(sent) > 1 else None
    p = percentiles(from_send, [50, 90, 99, 100])
    s = percentiles(from_schedule, [50, 99])
    return {
        "samples": len(from_send),
        "target_rate": rate,
        "achieved_send_rate": achieved,
        "from_send_ms": {"p50": p[0], "p90": p[1], "p99": p[2], "max": p[3]},
        "from_schedule_ms": {"p50": s[0], "p99": s[1]},
    }


def run_checkpoint_job(
    entities: int, events_per_entity: int, metrics: int, work: Path
) -> dict[str, Any]:
    """Checkpoint size with ``entities`` entities in keyed state (MiniCluster, hashmap backend)."""
    from pyflink.common.typeinfo import Types

    from job.pipeline import build_pipeline, file_source

    if work.exists():
        shutil.rmtree(work)
    chk_dir = work / "checkpoints"
    markers = work / "markers"
    markers.mkdir(parents=True)
    n = entities * events_per_entity
    lines = generate_events(n, metrics=metrics, entities=entities)
    # One more entity an hour ahead: the watermark then passes every other entity's events,
    # so their release timers fire and no event stays buffered (a state replay can match).
    last_ts = json.loads(lines[-1])["ts"]
    clock = {"entity": "clock", "ts": last_ts + 3_600_000, "metrics": {"m00": 1.0}}
    lines.append(json.dumps(clock, separators=(",", ":")))
    tail = [f"#tail {k}" for k in range(6000)]  # at most 6000 * 20 ms = 2 minutes
    path = write_lines(work / "input.jsonl", [*lines, *tail])
    # The full snapshot on every write (no journal), so that every key's value is the encoded
    # snapshot the operator loop computes and Flink's per-key overhead can be derived; with the
    # default journal each entity holds up to snapshot_every - 1 more event payloads.
    cfg = _bench_config(["execution.checkpoint_interval_ms=300", "execution.snapshot_every=1"])
    env = _environment(
        cfg,
        ship_job=True,
        conf={
            "execution.checkpointing.storage": "filesystem",
            "execution.checkpointing.dir": chk_dir.resolve().as_uri(),
            "execution.checkpointing.num-retained": "100",
        },
    )
    src = (
        file_source(env, str(path))
        .map(SlowTail(str(markers)), output_type=Types.STRING())
        .name("slow-tail")
        .uid("slow-tail")
        .filter(lambda s: s != "")
        .name("drop-tail")
        .uid("drop-tail")
    )
    for out_name, stream in build_pipeline(env, cfg, src).items():
        _discard(stream, out_name)
    client = env.execute_async("bench-checkpoint")
    result = client.get_job_execution_result()
    sizes: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + 600
    after: int | None = None
    chosen: int | None = None  # the newest full checkpoint when the tail is released
    while time.monotonic() < deadline:
        done = _completed_checkpoints(chk_dir)
        for cid, size in done.items():
            sizes[cid] = size
        if after is None and (markers / "tail-started").exists():
            after = max(_checkpoint_ids(chk_dir), default=0)
        # Settled: two checkpoints taken after the tail started hold the same bytes (the
        # watermark, emitted every 200 ms, has fired every release timer by then).
        late = sorted(cid for cid in sizes if after is not None and cid > after)
        if chosen is None and len(late) >= 2 and sizes[late[-1]] == sizes[late[-2]]:
            chosen = late[-1]
            (markers / "release").touch()
        if result.done():
            break
        time.sleep(0.05)
    result.result()  # raises if the job failed
    if chosen is None:
        raise RuntimeError("no checkpoint completed with every entity in state")
    # (After the release the input ends, the final watermark fires the idle timers, every
    # entity's state is cleared, and a last checkpoint holds nothing.)
    chk_id = chosen
    chk_bytes, meta_bytes = sizes[chk_id]
    # The same events through the plain operator loop, every entity but the clock released as the
    # watermark released it in the job: the encoded values Flink held.
    cfg = DetectorConfig()
    assert isinstance(clock["ts"], int)
    states: dict[str, bytes] = {}
    _operator_loop(lines, cfg, ParseConfig(), (), states_out=states)
    values = {}
    watermark = clock["ts"] - cfg.lateness.max_out_of_orderness_ms - 1
    for entity, data in states.items():
        if entity != "clock":  # what DetectAnomalies.on_timer does when the watermark passes
            det = EntityDetector.restore(entity, cfg, decode(data))
            det.on_watermark(watermark)
            data = encode(det.snapshot())
        values[entity] = len(data)
    values_total = sum(values.values())
    keys = len(values)
    return {
        "entities": entities,
        "keys": keys,
        "events_per_entity": events_per_entity,
        "metrics": metrics,
        "checkpoint_id": chk_id,
        "checkpoint_bytes": chk_bytes,
        "metadata_bytes": meta_bytes,
        "encoded_values_bytes": values_total,
        "mean_encoded_value_bytes": values_total / keys,
        "overhead_bytes_per_key": (chk_bytes - meta_bytes - values_total) / keys,
        "checkpoints_seen": len(sizes),
    }


def _checkpoint_ids(chk_dir: Path) -> list[int]:
    ids = []
    for d in glob.glob(str(chk_dir / "*" / "chk-*")):
        try:
            ids.append(int(d.rsplit("-", 1)[1]))
        except ValueError:
            continue
    return ids


def _completed_checkpoints(chk_dir: Path) -> dict[int, tuple[int, int]]:
    """``{checkpoint id: (bytes of all its files, bytes of its _metadata)}``."""
    out = {}
    for d in glob.glob(str(chk_dir / "*" / "chk-*")):
        meta = os.path.join(d, "_metadata")
        if not os.path.exists(meta):
            continue
        try:
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            out[int(d.rsplit("-", 1)[1])] = (size, os.path.getsize(meta))
        except (OSError, ValueError):
            continue  # subsumed and deleted while we looked
    return out


# -- standalone cluster (full run) -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rest(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _cluster_main(argv: Sequence[str]) -> int:
    """Inside ``flink run -py job/bench.py -- cluster-job --input F --parallelism P``."""
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--input", required=True)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--name", required=True)
    a = p.parse_args(argv)
    from job.pipeline import build_pipeline, create_environment, file_source

    cfg = _bench_config([f"execution.parallelism={a.parallelism}"])
    env = create_environment(cfg)
    for out_name, stream in build_pipeline(env, cfg, file_source(env, a.input)).items():
        _discard(stream, out_name)
    env.execute(a.name)
    return 0


def run_cluster(plan: Plan, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Parallelism 1 and 2 on a standalone cluster of two one-slot TaskManagers."""
    script = str(PROJECT_ROOT / "scripts" / "cluster.sh")
    build = work / "cluster"
    rest_port, rpc_port = _free_port(), _free_port()
    env = dict(os.environ, VENV=sys.prefix)
    entities = 64
    n1, n2 = plan.cluster_sizes
    lines = generate_events(n2, metrics=HEADLINE_METRICS, entities=entities)
    files = {n: write_lines(work / f"cluster-{n}.jsonl", lines[:n]) for n in (n1, n2)}
    start = [script, "start", "--taskmanagers", "2", "--build-dir", str(build)]
    start += ["--rest-port", str(rest_port), "--rpc-port", str(rpc_port)]
    log(f"  starting a standalone cluster (2 TaskManagers, REST port {rest_port}) ...")
    subprocess.run(start, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=300)
    rows = []
    try:
        base = f"http://127.0.0.1:{rest_port}"
        for parallelism in (1, 2):
            runs = []
            for rep in range(plan.repeats):
                for n in (n1, n2):
                    name = f"bench-cluster-p{parallelism}-{n}-{rep}"
                    cmd = [script, "submit", "--build-dir", str(build), "--"]
                    cmd += ["-p", str(parallelism), "-py", "job/bench.py", "-pyfs", "job,udfs,state"]
                    cmd += ["cluster-job", "--input", str(files[n]), "--parallelism"]
                    cmd += [str(parallelism), "--name", name]
                    w0 = time.perf_counter()
                    subprocess.run(
                        cmd, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=1800
                    )
                    wall = time.perf_counter() - w0
                    jobs = _rest(f"{base}/jobs/overview")["jobs"]
                    job = next(j for j in jobs if j["name"] == name)
                    runs.append({"n": n, "wall_s": wall, "job_s": job["duration"] / 1000.0})
                    log(f"    p={parallelism} N={n}: job {job['duration'] / 1000:.1f} s")
            jt = fastest((r["n"], r["job_s"]) for r in runs)
            wt = fastest((r["n"], r["wall_s"]) for r in runs)
            rows.append(
                {
                    "parallelism": parallelism,
                    "entities": entities,
                    "metrics": HEADLINE_METRICS,
                    "n1": n1,
                    "n2": n2,
                    "eps": marginal_rate(n1, jt[n1], n2, jt[n2]),
                    "eps_submit_wall": marginal_rate(n1, wt[n1], n2, wt[n2]),
                    "runs": runs,
                }
            )
    finally:
        subprocess.run(
            [script, "stop", "--build-dir", str(build)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=120,
        )
    p1 = rows[0]["eps"]
    p2 = rows[1]["eps"]
    return {"rows": rows, "speedup_p2_over_p1": ratio(p2, p1)}


# -- the plan ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each part runs. Sizes are derived from the plain loop's measured rate."""

    quick: bool
    entities: int = 16
    interval_ms: int = 20_000
    metrics: tuple[int, ...] = (1, 4, 16)
    process_metrics: tuple[int, ...] = (1, 4, 16)
    # seconds of marginal work per job (at the plain loop's rate) and of the first size
    job_seconds: float = 25.0
    base_seconds: float = 5.0
    repeats: int = 2
    headline_repeats: int = 3
    naive_seconds: float = 20.0
    latency_seconds: float = 40.0
    latency_warmup_s: float = 5.0
    state_hours: float = 26.0
    checkpoint_entities: tuple[int, ...] = (1_000, 10_000)
    profile_events: int = 6000
    cluster: bool = True
    cluster_sizes: tuple[int, int] = (4000, 24000)
    floor_seconds: float = 10.0
    embedded_events: int = 20_000
    embedded_reps: int = 3

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            process_metrics=(4,),
            job_seconds=3.0,
            base_seconds=1.0,
            repeats=1,
            headline_repeats=1,
            naive_seconds=10.0,
            latency_seconds=12.0,
            latency_warmup_s=2.0,
            state_hours=25.0,
            checkpoint_entities=(1_000,),
            profile_events=2000,
            cluster=False,
            floor_seconds=3.0,
            embedded_events=8000,
            embedded_reps=2,
        )

    def sizes(self, rate: float) -> tuple[int, int]:
        """``(N1, N2)`` for a stage expected to run at ``rate`` events per second."""
        n1 = max(300, int(rate * self.base_seconds))
        n2 = n1 + max(1000, int(rate * self.job_seconds))
        step = self.entities
        return n1 // step * step, n2 // step * step


# -- running it all ---------------------------------------------------------------------------


def _job_row(
    mode: str, metrics: int, n1: int, n2: int, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    wall = fastest((r["n"], r["wall_s"]) for r in runs)
    cpu = fastest((r["n"], r["cpu_s"]) for r in runs)
    net = fastest((r["n"], r["net_runtime_s"]) for r in runs)
    eps = marginal_rate(n1, wall[n1], n2, wall[n2])
    eps_cpu = marginal_rate(n1, cpu[n1], n2, cpu[n2])
    return {
        "mode": mode,
        "metrics": metrics,
        "n1": n1,
        "n2": n2,
        "eps": eps,
        "eps_per_cpu_s": eps_cpu,
        "eps_net_runtime": marginal_rate(n1, net[n1], n2, net[n2]),
        "cores_used": ratio(eps, eps_cpu),  # CPU-seconds per wall-second over N1..N2
        "fixed_cost_s": fixed_cost(n1, wall[n1], eps),
        "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def _measure_job(
    lines: Sequence[str],
    work: Path,
    mode: str,
    metrics: int,
    n1: int,
    n2: int,
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    files = {n: write_lines(work / f"{mode}-{metrics}m-{n}.jsonl", lines[:n]) for n in (n1, n2)}
    runs = []
    for rep in range(repeats):
        for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
            t = run_detect_job(files[n], [f"execution.mode={mode}"], f"bench-{mode}-{metrics}m-{n}")
            runs.append({"n": n, **t})
            log(f"    {mode} {metrics:>2} metrics N={n:>6}: {t['wall_s']:6.1f} s wall, {t['cpu_s']:6.1f} s cpu")
    return _job_row(mode, metrics, n1, n2, runs)


def build_report(r: dict[str, Any]) -> dict[str, Any]:
    """The report: the required top-level keys from the measured tables (pure)."""
    def pick(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
        return next((x for x in rows if all(x.get(k) == v for k, v in match.items())), {})

    job = pick(r.get("throughput", []), mode="thread", metrics=HEADLINE_METRICS)
    plain = pick(r.get("plain", []), metrics=HEADLINE_METRICS, variant="core")
    operator = pick(r.get("plain", []), metrics=HEADLINE_METRICS, variant="operator")
    naive = r.get("naive", {})
    lat = r.get("latency", {}).get("from_send_ms", {})
    state = pick(r.get("state", {}).get("per_metrics", []), metrics=HEADLINE_METRICS)
    report = {
        "job_eps": job.get("eps"),
        "plain_eps": plain.get("eps"),
        "plain_operator_eps": operator.get("eps"),
        "naive_eps": naive.get("eps"),
        "job_vs_plain": ratio(job.get("eps"), plain.get("eps")),
        "job_vs_plain_operator": ratio(job.get("eps"), operator.get("eps")),
        "job_vs_naive": ratio(job.get("eps"), naive.get("eps")),
        "job_eps_per_cpu_s": job.get("eps_per_cpu_s"),
        "plain_eps_per_cpu_s": plain.get("eps_per_cpu_s"),
        "naive_eps_per_cpu_s": naive.get("eps_per_cpu_s"),
        "job_vs_plain_cpu": ratio(job.get("eps_per_cpu_s"), plain.get("eps_per_cpu_s")),
        "job_vs_naive_cpu": ratio(job.get("eps_per_cpu_s"), naive.get("eps_per_cpu_s")),
        "latency_ms_p50": lat.get("p50"),
        "latency_ms_p99": lat.get("p99"),
        # The snapshot and a full journal: the most an entity holds at the steady state.
        "state_bytes_per_entity": state.get("steady_bytes_with_journal", state.get("steady_bytes")),
        "headline_metrics": HEADLINE_METRICS,
        "machine": r.get("machine", {}),
    }
    plain_cpu = plain.get("eps_per_cpu_s")
    bounds = job_bounds(plain_cpu, r.get("floor", []), r.get("embedded", {}))
    report["bounds"] = bounds
    # The best a job could reach at any shape measured: the bound of the least costly.
    best = max(bounds.values(), key=lambda b: b["eps_per_cpu_s"], default=None)
    report["bound_eps_per_cpu_s"] = best["eps_per_cpu_s"] if best else None
    report["bound_vs_plain_cpu"] = best["vs_plain"] if best else None
    report["targets"] = {
        name: {
            "target": target,
            "value": report[name],
            "met": None
            if report[name] is None
            else (report[name] <= target if name == "state_bytes_per_entity" else report[name] >= target),
        }
        for name, target in TARGETS.items()
    }
    for name, key in (("job_eps", "bound_eps_per_cpu_s"), ("job_vs_plain", "bound_vs_plain_cpu")):
        report["targets"][name]["bound"] = report[key]
    report["method"] = METHOD
    for k, v in r.items():
        report.setdefault(k, v)
    return report


def _fmt(x: Any, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def render_markdown(rep: dict[str, Any]) -> str:
    """The report as markdown tables (also what the console shows)."""
    out = [
        f"# Benchmark {rep.get('date', '')} ({'quick' if rep.get('quick') else 'full'} run, "
        f"{_fmt(rep.get('duration_s'))} s)",
        "",
        f"Machine: {rep['machine'].get('cpu_model')}, {rep['machine'].get('cores')} cores, "
        f"{rep['machine'].get('memory_gib')} GiB; Python {rep['machine'].get('python')}, "
        f"Flink {rep['machine'].get('flink')}, River {rep['machine'].get('river')}; load average "
        f"at start {rep['machine'].get('loadavg_start')}, at end {rep['machine'].get('loadavg_end')}; "
        f"compiled core modules (mypyc): {', '.join(rep['machine'].get('compiled_core') or []) or 'none'}; "
        f"line batcher: {rep['machine'].get('line_batcher') or 'none (one Python call per line)'}.",
        "",
        "## Headline (4 metrics per event, thread mode, parallelism 1)",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
    ]
    t = rep.get("targets", {})

    def target_row(label: str, key: str, digits: int, unit: str = "") -> str:
        tg = t.get(key, {})
        met = tg.get("met")
        return (
            f"| {label} | {_fmt(rep.get(key), digits)}{unit} | {_fmt(tg.get('target'), digits)}{unit} | "
            f"{'yes' if met else 'no' if met is not None else 'n/a'} |"
        )

    out += [
        target_row("job events/s (wall, marginal)", "job_eps", 0),
        target_row("job / plain loop (core)", "job_vs_plain", 2),
        target_row("job / naive River-in-ValueState job", "job_vs_naive", 1, "x"),
        target_row("state bytes per entity (steady state)", "state_bytes_per_entity", 0),
        f"| job events per CPU-second | {_fmt(rep.get('job_eps_per_cpu_s'))} | | |",
        f"| job / plain, per CPU-second | {_fmt(rep.get('job_vs_plain_cpu'), 2)} | | |",
        f"| job / plain operator loop (core + journal entry, snapshot every {SNAPSHOT_EVERY}) | "
        f"{_fmt(rep.get('job_vs_plain_operator'), 2)} | | |",
        f"| job / naive, per CPU-second | {_fmt(rep.get('job_vs_naive_cpu'), 1)}x | | |",
        f"| bound: the most any job running this core could reach, events per CPU-second | "
        f"{_fmt(rep.get('bound_eps_per_cpu_s'))} | | |",
        f"| bound / plain, per CPU-second | {_fmt(rep.get('bound_vs_plain_cpu'), 2)} | | |",
        f"| latency p50 / p99 (ms) at half the max rate | {_fmt(rep.get('latency_ms_p50'), 1)} / "
        f"{_fmt(rep.get('latency_ms_p99'), 1)} | | |",
        "",
        "## Throughput (marginal rate, events N1..N2)",
        "",
        "| what | mode | metrics | N1 | N2 | events/s (wall) | events/CPU-s | cores busy | fixed cost s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in rep.get("plain", []):
        out.append(
            f"| plain loop {p['variant']} | - | {p['metrics']} | {p['n1']:,} | {p['n2']:,} | "
            f"{_fmt(p['eps'])} | {_fmt(p['eps_per_cpu_s'])} | 1 | 0 |"
        )
    for j in rep.get("throughput", []):
        out.append(
            f"| job | {j['mode']} | {j['metrics']} | {j['n1']:,} | {j['n2']:,} | {_fmt(j['eps'])} | "
            f"{_fmt(j['eps_per_cpu_s'])} | {_fmt(j.get('cores_used'), 2)} | {_fmt(j.get('fixed_cost_s'), 1)} |"
        )
    nv = rep.get("naive")
    if nv:
        out.append(
            f"| naive River job | thread | {nv['metrics']} | {nv['n1']:,} | {nv['n2']:,} | {_fmt(nv['eps'], 1)} | "
            f"{_fmt(nv['eps_per_cpu_s'], 1)} | {_fmt(nv.get('cores_used'), 2)} | {_fmt(nv.get('fixed_cost_s'), 1)} |"
        )
    np_ = rep.get("naive_plain")
    if np_:
        out.append(
            f"| naive River, plain loop (pickle per event) | - | {np_['metrics']} | {np_['n1']:,} | "
            f"{np_['n2']:,} | {_fmt(np_['eps'], 1)} | {_fmt(np_['eps_per_cpu_s'], 1)} | 1 | 0 |"
        )
    ratios = [
        (j["mode"], j["metrics"], ratio(j["eps"], pl.get("eps")), ratio(j["eps_per_cpu_s"], pl.get("eps_per_cpu_s")))
        for j in rep.get("throughput", [])
        for pl in [next((p for p in rep.get("plain", []) if p["metrics"] == j["metrics"] and p["variant"] == "core"), {})]
    ]
    if ratios:
        out += ["", "| job / plain (core) | metrics | wall | per CPU-second |", "|---|---|---|---|"]
        out += [f"| {m} | {k} | {_fmt(a, 2)} | {_fmt(b, 2)} |" for m, k, a, b in ratios]
    emb = rep.get("embedded")
    if rep.get("floor") or emb:
        out += [
            "",
            f"## What bounds the job ({HEADLINE_METRICS} metrics, thread mode, per CPU-second)",
            "",
            "A job's cost per event is at least its shape's *floor* (the same job with a keyed "
            "operator that does nothing with its events) plus the core loop's cost when Python runs "
            "embedded in the JVM. The operator's own work (state, timers, metrics, outputs) is left "
            "out, so the bound is more than a job of that shape can reach.",
            "",
        ]
    if emb:
        out += [
            f"The core loop ({emb['events']:,} events, thread CPU time, parse + detect): "
            f"{_fmt(core_us(emb['in_job']), 1)} us per event in a thread-mode task, "
            f"{_fmt(core_us(emb['in_process']), 1)} us in the "
            f"benchmark's own process: {_fmt(emb['factor'], 2)}x.",
            "",
        ]
    if rep.get("floor"):
        bounds = rep.get("bounds", {})
        out += [
            "| shape | floor events/s (wall) | floor events/CPU-s | floor us/event | + core in the JVM us/event "
            "| bound events/CPU-s | bound / plain |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in rep["floor"]:
            b = bounds.get(f["shape"], {})
            out.append(
                f"| {f['shape']} | {_fmt(f['eps'])} | {_fmt(f['eps_per_cpu_s'])} | {_fmt(b.get('floor_us'), 1)} | "
                f"{_fmt(b.get('core_us'), 1)} | {_fmt(b.get('eps_per_cpu_s'))} | {_fmt(b.get('vs_plain'), 2)} |"
            )
        out += [
            "",
            "`pipeline`: this job's shape (entity and timestamp read from the raw line by Flink SQL, "
            "timestamps, an entity's lines grouped and keys in Java, the keyed Python operator, which "
            "parses the lines). `unbatched`: the same with one Python call per line. `single`: "
            "the entity read by Flink SQL, keyed in Java, one Python operator per line, no event time.",
        ]
    low = [j for j in rep.get("throughput", []) if (j.get("cores_used") or 1.0) < 0.5]
    if low:
        out += [
            "",
            "Fewer than 0.5 cores busy ("
            + ", ".join(f"{j['mode']}, {j['metrics']} metrics" for j in low)
            + "): the CPU meter missed part of that job's work (its Python alone keeps a core "
            "busy): trust its wall-clock rate only.",
        ]
    lat = rep.get("latency")
    if lat:
        fs, sc = lat["from_send_ms"], lat["from_schedule_ms"]
        out += [
            "",
            "## Latency (send -> score record out of detect)",
            "",
            f"Paced at {_fmt(lat['target_rate'])} events/s (achieved {_fmt(lat.get('achieved_send_rate'))}), "
            f"half of {_fmt(lat.get('max_rate'))} events/s ({lat.get('max_rate_basis', 'n/a')}), "
            f"{lat['entities']} entities, {lat['samples']:,} samples.",
            "",
            "| from | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
            f"| send | {_fmt(fs['p50'], 1)} | {_fmt(fs['p90'], 1)} | {_fmt(fs['p99'], 1)} | {_fmt(fs['max'], 1)} |",
            f"| schedule | {_fmt(sc['p50'], 1)} | | {_fmt(sc['p99'], 1)} | |",
        ]
        for extra in lat.get("variants", []):
            e = extra["from_send_ms"]
            out.append(f"| send ({extra['label']}) | {_fmt(e['p50'], 1)} | {_fmt(e['p90'], 1)} | {_fmt(e['p99'], 1)} | {_fmt(e['max'], 1)} |")
    st = rep.get("state")
    if st:
        out += [
            "",
            "## State per entity (encoded ValueState value, plain Python)",
            "",
            "| metrics | snapshot bytes at 1 h / 6 h / 12 h / 24 h / end | steady snapshot | "
            f"+ full journal ({SNAPSHOT_EVERY - 1} events) | encode us | decode+restore us |",
            "|---|---|---|---|---|---|",
        ]
        for s in st["per_metrics"]:
            growth = " / ".join(f"{g['bytes']:,}" for g in s["growth"])
            with_journal = s.get("steady_bytes_with_journal")
            out.append(
                f"| {s['metrics']} | {growth} | {s['steady_bytes']:,} | {_fmt(with_journal)} | "
                f"{s['snapshot_encode_us']} | {s['decode_restore_us']} |"
            )
        if st.get("totals"):
            out += ["", "| entities | steady state total (MB) | incl. Flink per-key overhead (MB) |", "|---|---|---|"]
            for tot in st["totals"]:
                out.append(f"| {tot['entities']:,} | {_fmt(tot['values_mb'], 1)} | {_fmt(tot['with_overhead_mb'], 1)} |")
    for c in rep.get("checkpoint", []):
        out += [
            "",
            f"Checkpoint (MiniCluster, hashmap backend): {c['entities']:,} entities x {c['events_per_entity']} events, "
            f"{c['metrics']} metrics: {c['checkpoint_bytes']:,} bytes; encoded values {c['encoded_values_bytes']:,} bytes "
            f"(mean {_fmt(c['mean_encoded_value_bytes'])}); Flink overhead {_fmt(c['overhead_bytes_per_key'])} bytes per key.",
        ]
    cl = rep.get("cluster")
    if cl:
        out += ["", "## Standalone cluster (2 TaskManagers x 1 slot)", "", "| parallelism | events/s (job duration, marginal) | events/s (submit wall) |", "|---|---|---|"]
        for row in cl["rows"]:
            out.append(f"| {row['parallelism']} | {_fmt(row['eps'])} | {_fmt(row['eps_submit_wall'])} |")
        out.append(f"\nSpeed-up p=2 / p=1: {_fmt(cl.get('speedup_p2_over_p1'), 2)}")
    pr = rep.get("profile")
    if pr:
        out += ["", f"## Profile of the plain operator loop ({pr['tool']}, {pr['events']:,} events, {pr['metrics']} metrics)", ""]
        out += ["| module | share |", "|---|---|"]
        out += [f"| {r_['what']} | {r_['share'] * 100:.1f} % |" for r_ in pr["by_module"]]
        out += ["", "| phase (call from the loop) | share |", "|---|---|"]
        out += [f"| {r_['what']} | {r_['share'] * 100:.1f} % |" for r_ in pr["by_phase"]]
        if rep["machine"].get("compiled_core"):
            out += ["", "Compiled modules have no Python frames: their time counts under their callers."]
    errors = rep.get("errors")
    if errors:
        out += ["", "## Parts that failed", ""] + [f"- {e}" for e in errors]
    out += ["", "## Method", "", rep.get("method", METHOD), ""]
    return "\n".join(out)


QUICK_BUDGET_S = 250.0  # --quick starts no part after this (the machine may be loaded)
ALL_PARTS = ("state", "profile", "plain", "thread", "floor", "naive", "latency", "checkpoint", "process", "cluster")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; write ``<out>/<date>.json`` and ``.md``; print the table."""
    t_start = time.perf_counter()
    plan = Plan.for_mode(bool(args.quick))
    parts = set(p.strip() for p in args.only.split(",") if p.strip()) or set(ALL_PARTS)
    unknown = parts - set(ALL_PARTS)
    if unknown:
        raise ValueError(f"unknown --only parts: {', '.join(sorted(unknown))} (known: {', '.join(ALL_PARTS)})")
    if not plan.cluster:
        parts.discard("cluster")
    work = PROJECT_ROOT / "bench" / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = DetectorConfig()

    def log(msg: str) -> None:
        print(msg, flush=True)

    res: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "quick": plan.quick,
        "plan": dataclasses.asdict(plan),
        "machine": machine_info(),
        "errors": [],
    }
    log(f"bench: {'quick' if plan.quick else 'full'} run; parts: {', '.join(p for p in ALL_PARTS if p in parts)}")
    log("  " + METHOD)

    def part(name: str, fn: Callable[[], None]) -> None:
        if name not in parts:
            return
        elapsed = time.perf_counter() - t_start
        if plan.quick and elapsed > QUICK_BUDGET_S:
            res["errors"].append(f"{name}: skipped, the quick run was past {QUICK_BUDGET_S:.0f} s")
            log(f"[{name}] skipped: {elapsed:.0f} s gone, the quick budget is {QUICK_BUDGET_S:.0f} s")
            return
        t = time.perf_counter()
        log(f"[{name}]")
        try:
            fn()
        except Exception as exc:  # a failed part is reported, the others still run
            res["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"  FAILED: {type(exc).__name__}: {exc}")
        log(f"  ({time.perf_counter() - t:.0f} s)")

    state: dict[str, Any] = {"per_metrics": []}
    res["state"] = state

    def state_part() -> None:
        # (Shorter than steady_state_hours, the drift monitor's samples would be left out.)
        hours = max(plan.state_hours, steady_state_hours(cfg, plan.interval_ms))
        for m in plan.metrics:
            s = state_growth(m, cfg, hours=hours, interval_ms=plan.interval_ms)
            state["per_metrics"].append(s)
            log(f"  state {m:>2} metrics: {s['steady_bytes']:,} bytes after {hours:g} h; "
                f"encode {s['snapshot_encode_us']} us, decode+restore {s['decode_restore_us']} us")

    part("state", state_part)

    def profile() -> None:
        lines = generate_events(plan.profile_events, metrics=HEADLINE_METRICS, entities=plan.entities)
        pr = profile_plain(lines, cfg)
        res["profile"] = pr
        log("  " + ", ".join(f"{r_['what']} {r_['share'] * 100:.0f}%" for r_ in pr["by_module"][:8]))

    part("profile", profile)

    streams: dict[int, list[str]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    plain_rows: list[dict[str, Any]] = []
    res["plain"] = plain_rows

    def plain() -> None:
        for m in plan.metrics:
            # Size the stream from a short probe of the operator loop, then measure both loops.
            probe_lines = generate_events(600, metrics=m, entities=plan.entities)
            (_, w1, _), (_, w2, _) = plain_loop(probe_lines, cfg, codec=True, marks=(200, 600))
            # The job runs at about 0.3-0.45 of the operator loop (Flink's own per-event
            # cost): size its runs for about job_seconds of marginal work at 0.4.
            n1, n2 = plan.sizes(JOB_SHARE * 400 / (w2 - w1))
            streams[m] = generate_events(n2, metrics=m, entities=plan.entities, interval_ms=plan.interval_ms)
            sizes[m] = (n1, n2)
            for variant, codec in (("core", False), ("operator", True)):
                row = measure_plain(streams[m], cfg, n1, n2, codec=codec, repeats=plan.repeats)
                row.update(variant=variant, metrics=m)
                plain_rows.append(row)
                log(f"  plain {variant:<10} {m:>2} metrics: {row['eps']:8,.0f} events/s ({row['eps_per_cpu_s']:,.0f} per CPU-s)")

    part("plain", plain)
    if not streams:  # parts after this need the streams and their sizes
        for m in plan.metrics:
            n1, n2 = plan.sizes(500)
            streams[m] = generate_events(n2, metrics=m, entities=plan.entities, interval_ms=plan.interval_ms)
            sizes[m] = (n1, n2)

    throughput: list[dict[str, Any]] = []
    res["throughput"] = throughput

    warmed: set[str] = set()  # modes that have run a throw-away job in this process

    def warm_up(mode: str) -> None:
        # A thread-mode job first, always: a client that ran a process-mode job before its
        # first thread-mode job hung in PEMJA's interpreter start (seen with Flink 2.3.0).
        for m in ("thread", mode):
            if m not in warmed:
                warm = write_lines(work / f"warmup-{m}.jsonl", streams[HEADLINE_METRICS][:200])
                run_detect_job(warm, [f"execution.mode={m}"], f"bench-warmup-{m}")
                warmed.add(m)

    def jobs(mode: str, metric_counts: Sequence[int]) -> None:
        warm_up(mode)
        for m in metric_counts:
            n1, n2 = sizes[m]
            if mode == "process":  # slower: keep its runs about as long
                n1, n2 = plan.sizes(0.4 * (n2 - n1) / plan.job_seconds)
                n2 = min(n2, len(streams[m]))
            reps = plan.headline_repeats if m == HEADLINE_METRICS and mode == "thread" else plan.repeats
            row = _measure_job(streams[m], work, mode, m, n1, n2, reps, log)
            throughput.append(row)
            pl = next((p for p in plain_rows if p["metrics"] == m and p["variant"] == "core"), {})
            log(
                f"  job {mode} {m:>2} metrics: {_fmt(row['eps'])} events/s, {_fmt(row['eps_per_cpu_s'])} per CPU-s; "
                f"job/plain {_fmt(ratio(row['eps'], pl.get('eps')), 2)} (wall), "
                f"{_fmt(ratio(row['eps_per_cpu_s'], pl.get('eps_per_cpu_s')), 2)} (CPU)"
            )

    part("thread", lambda: jobs("thread", plan.metrics))

    floor_rows: list[dict[str, Any]] = []

    def floor() -> None:
        # Null operators run several times faster than the job: size each shape for
        # floor_seconds of marginal work at its expected rate (the first size: 1 s).
        job = next((j for j in throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        job_rate = job.get("eps") or FLOOR_FALLBACK_JOB_EPS  # (sizing only)
        step = plan.entities
        shape_sizes = {}
        for shape in FLOOR_SHAPES:
            rate = FLOOR_SPEEDUP[shape] * job_rate
            f1 = max(1000, int(rate)) // step * step
            shape_sizes[shape] = (f1, f1 + max(4000, int(rate * plan.floor_seconds)) // step * step)
        longest = max(b for _, b in shape_sizes.values())
        lines = generate_events(longest, metrics=HEADLINE_METRICS, entities=step, interval_ms=plan.interval_ms)
        warm_up("thread")
        for shape in FLOOR_SHAPES:
            n1, n2 = shape_sizes[shape]
            files = {n: write_lines(work / f"floor-{shape}-{n}.jsonl", lines[:n]) for n in (n1, n2)}
            runs = []
            for rep in range(plan.repeats):
                for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
                    t = run_floor_job(files[n], shape, f"bench-floor-{shape}-{n}")
                    runs.append({"n": n, **t})
            row = _job_row("thread", HEADLINE_METRICS, n1, n2, runs)
            row["shape"] = shape
            floor_rows.append(row)
            res["floor"] = floor_rows
            log(f"  floor {shape:<8}: {_fmt(row['eps'])} events/s, {_fmt(row['eps_per_cpu_s'])} per CPU-s")
        # The core loop inside a thread-mode task and in this process, taking turns.
        k = min(len(lines), plan.embedded_events)
        path = write_lines(work / "embedded.jsonl", lines[:k])
        runs_in: list[dict[str, float]] = []
        runs_out: list[dict[str, float]] = []
        for _ in range(plan.repeats):
            runs_out.append(split_core_loop(lines[:k], cfg, plan.embedded_reps))
            runs_in.append(run_embedded_core(path, plan.embedded_reps))
        emb: dict[str, Any] = {
            "events": k,
            "in_process": min(runs_out, key=core_us),
            "in_job": min(runs_in, key=core_us),
        }
        emb["factor"] = embedded_factor(emb)
        res["embedded"] = emb
        log(f"  core loop: {core_us(emb['in_job']):.1f} us/event in a thread-mode task, "
            f"{core_us(emb['in_process']):.1f} in this process ({emb['factor']:.2f}x)")

    part("floor", floor)

    def naive() -> None:
        lines = streams[HEADLINE_METRICS]
        (_, w1, c1), (_, w2, c2) = naive_plain_loop(lines[:120], marks=(20, 120))
        plain_rate = 100 / (w2 - w1)
        res["naive_plain"] = {
            "metrics": HEADLINE_METRICS, "n1": 20, "n2": 120,
            "eps": plain_rate, "eps_per_cpu_s": 100 / max(c2 - c1, 1e-9),
        }
        log(f"  naive River plain loop (pickle per event): {plain_rate:,.1f} events/s")
        # Pickling dominates, so the job should run at about the loop's rate.
        guess = max(5.0, min(plain_rate, 200.0))
        n1 = max(32, int(guess * plan.base_seconds)) // plan.entities * plan.entities
        n2 = n1 + max(96, int(guess * plan.naive_seconds)) // plan.entities * plan.entities
        files = {n: write_lines(work / f"naive-{n}.jsonl", lines[:n]) for n in (n1, n2)}
        warm_up("thread")
        runs = []
        for n in (n1, n2):
            t = run_naive_job(files[n], f"bench-naive-{n}")
            runs.append({"n": n, **t})
            log(f"    naive N={n}: {t['wall_s']:.1f} s wall, {t['cpu_s']:.1f} s cpu")
        row = _job_row("thread", HEADLINE_METRICS, n1, n2, runs)
        res["naive"] = row
        job = next((j for j in throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        log(f"  naive job: {_fmt(row['eps'], 1)} events/s; job/naive {_fmt(ratio(job.get('eps'), row['eps']), 1)}x")

    part("naive", naive)

    def latency() -> None:
        warm_up("thread")
        job = next((j for j in throughput if j["mode"] == "thread" and j["metrics"] == HEADLINE_METRICS), {})
        pl = next((p for p in plain_rows if p["metrics"] == HEADLINE_METRICS and p["variant"] == "core"), {})
        # Half the maximum rate of the latency job itself: it emits a score record for every
        # event and runs two more Python maps (pace, arrivals), so it tops out below the
        # throughput job (at half of that job's rate it was saturated: the 2026-11-27 full
        # run's p50 was 684 ms, with the source 1.6 s behind its schedule). Its maximum is
        # the marginal rate of two unpaced runs.
        guess = LATENCY_JOB_SHARE * (job.get("eps") or JOB_SHARE * (pl.get("eps") or 1250.0))
        m1, m2 = plan.sizes(guess)
        m2 = m1 + (m2 - m1) // 2 // plan.entities * plan.entities
        unpaced = generate_events(m2, metrics=HEADLINE_METRICS, entities=plan.entities, interval_ms=plan.interval_ms)
        lw = work / "latency"
        lw.mkdir(exist_ok=True)
        top = {}
        for m_ in (m1, m2):
            pm = write_lines(work / f"latency-max-{m_}.jsonl", unpaced[:m_])
            top[m_] = run_latency_job(
                pm, math.inf, lw, entities=plan.entities, interval_ms=plan.interval_ms, overrides=[]
            )["timing"]
        max_rate = marginal_rate(m1, top[m1]["wall_s"], m2, top[m2]["wall_s"])
        basis = "the latency job unpaced (wall, marginal rate)"
        if not max_rate:  # noise larger than the signal: fall back on the throughput job
            max_rate = job.get("eps") or pl.get("eps") or 500.0
            basis = "job thread 4 metrics (wall)" if job.get("eps") else "plain loop"
        log(f"  latency job unpaced: {_fmt(max_rate)} events/s (N {m1:,} and {m2:,})")
        rate = 0.5 * max_rate
        n = int(rate * plan.latency_seconds) // plan.entities * plan.entities
        lines = generate_events(n, metrics=HEADLINE_METRICS, entities=plan.entities, interval_ms=plan.interval_ms)
        path = write_lines(work / "latency.jsonl", lines)
        raw = run_latency_job(path, rate, lw, entities=plan.entities, interval_ms=plan.interval_ms, overrides=[])
        stats = latency_stats(raw["pace"], raw["arrivals"], warmup_s=plan.latency_warmup_s, tail_events=plan.entities)
        stats.update(
            entities=plan.entities,
            max_rate=max_rate,
            max_rate_basis=basis,
            max_rate_sizes=[m1, m2],
            throughput_job_eps=job.get("eps"),
            ordering_wait_ms_estimate=1000.0 * plan.entities / rate,
            note=(
                "Event time is compressed (each entity reports every 20 s of event time, sent "
                f"{plan.entities / rate * 1000:.0f} ms apart in wall time), so an event is released "
                "from its entity's order buffer when that entity's next event arrives (or the "
                "watermark, emitted every 200 ms, passes it): that wait is part of these numbers. "
                "In a live stream (event time = wall time) every score additionally waits for "
                "detector.lateness.max_out_of_orderness_ms (5 s by default)."
            ),
        )
        res["latency"] = stats
        fs = stats["from_send_ms"]
        log(f"  latency at {rate:,.0f} events/s: p50 {fs['p50']:.1f} ms, p99 {fs['p99']:.1f} ms ({stats['samples']:,} samples)")
        if not plan.quick:
            # One entity: its next event comes 1/rate later, so the order wait nearly vanishes
            # and what is left is the pipeline (queues, network buffer timeout, Python).
            one = generate_events(n, metrics=HEADLINE_METRICS, entities=1, interval_ms=plan.interval_ms)
            p1 = write_lines(work / "latency-1.jsonl", one)
            raw = run_latency_job(p1, rate, lw, entities=1, interval_ms=plan.interval_ms, overrides=[])
            s1 = latency_stats(raw["pace"], raw["arrivals"], warmup_s=plan.latency_warmup_s, tail_events=1)
            s1["label"] = "1 entity: pipeline only"
            stats["variants"] = [s1]
            log(f"  latency, one entity: p50 {s1['from_send_ms']['p50']:.1f} ms, p99 {s1['from_send_ms']['p99']:.1f} ms")

    part("latency", latency)

    checkpoints: list[dict[str, Any]] = []
    res["checkpoint"] = checkpoints

    def checkpoint() -> None:
        warm_up("thread")
        for e in plan.checkpoint_entities:
            c = run_checkpoint_job(e, 2, HEADLINE_METRICS, work / f"checkpoint-{e}")
            checkpoints.append(c)
            log(f"  checkpoint, {e:,} entities: {c['checkpoint_bytes']:,} bytes; Flink overhead "
                f"{c['overhead_bytes_per_key']:,.0f} bytes per key")

    part("checkpoint", checkpoint)
    part("process", lambda: jobs("process", plan.process_metrics))

    steady = next(
        (s.get("steady_bytes_with_journal", s["steady_bytes"]) for s in state["per_metrics"] if s["metrics"] == HEADLINE_METRICS),
        None,
    )
    if steady:
        overhead = checkpoints[-1]["overhead_bytes_per_key"] if checkpoints else None
        state["totals"] = [
            {
                "entities": n,
                "values_mb": n * steady / 1e6,
                "with_overhead_mb": None if overhead is None else n * (steady + overhead) / 1e6,
            }
            for n in (1_000, 10_000, 100_000)
        ]

    part("cluster", lambda: res.__setitem__("cluster", run_cluster(plan, work, log)))

    res["machine"]["loadavg_end"] = list(os.getloadavg())
    res["duration_s"] = round(time.perf_counter() - t_start, 1)
    report = build_report(res)
    date = res["date"]
    (out_dir / f"{date}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = render_markdown(report)
    (out_dir / f"{date}.md").write_text(md)
    if not args.keep_tmp:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(md)
    print(
        f"job / plain loop (core): {_fmt(report['job_vs_plain'], 2)} (wall), "
        f"{_fmt(report['job_vs_plain_cpu'], 2)} (per CPU-second); target >= {TARGETS['job_vs_plain']:.2f}"
    )
    print(
        f"job / naive: {_fmt(report['job_vs_naive'], 1)}x (wall), "
        f"{_fmt(report['job_vs_naive_cpu'], 1)}x (per CPU-second); target >= {TARGETS['job_vs_naive']:.0f}x"
    )
    print(f"wrote {out_dir / (date + '.json')} and {out_dir / (date + '.md')}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "cluster-job":
        sys.exit(_cluster_main(sys.argv[1:]))
    from job.cli import main as cli_main  # one definition of the arguments: the CLI's

    sys.exit(cli_main(["bench", *sys.argv[1:]]))
