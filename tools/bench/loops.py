"""The detection core in plain-Python loops (no Flink): the limit the job should approach."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from state.codec import encode
from tools.bench.common import SNAPSHOT_EVERY, WITH_FEATURES
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import DeadLetter, Event, ParseConfig, parse_line
from udfs.core.feedback import parse_event_or_verdict
from udfs.parse import handoff

# -- plain-Python loops ------------------------------------------------------------------------


def _cpu_now() -> float:
    return time.process_time()


def _detector(detectors: dict[str, EntityDetector], entity: str, cfg: DetectorConfig) -> EntityDetector:
    """The entity's detector, kept in ``detectors`` (the operator's cache)."""
    det = detectors.get(entity)
    if det is None:
        det = detectors[entity] = EntityDetector(entity, cfg, WITH_FEATURES)
    return det


def detect_one(detectors: dict[str, EntityDetector], rec: Event, cfg: DetectorConfig) -> None:
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
            detect_one(detectors, rec, cfg)
        if todo and i == todo[0]:
            out.append((i, time.perf_counter() - w0, _cpu_now() - c0))
            todo.pop(0)
    return out


def operator_loop(
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
    ``codec``: the operator's loop (see :func:`operator_loop`)."""
    if not codec:
        return _core_loop(lines, cfg, pcfg or ParseConfig(), marks)
    return operator_loop(lines, cfg, pcfg or ParseConfig(), marks, snapshot_every)


def new_river_model() -> Any:
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
        model = new_river_model() if stored is None else pickle.loads(stored)
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


