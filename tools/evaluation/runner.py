"""One labelled series through the detection core, its outputs mapped back to its rows.

The evaluation feeds each series (one entity) to a fresh
:class:`udfs.core.detector.EntityDetector` in row order and flushes it at the end, as the
replay does. The detector releases events in ``(ts, content)`` order, so the ``k``-th score
record belongs to the ``k``-th row of that order among the rows that were not late; an
alert record belongs to the score record that follows it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event

__all__ = ["EntityRun", "run_entity"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class EntityRun:
    """What the core made of one series (one entry per row, row order).

    ``score``: ``anomaly_score`` (0 for rows not scored); ``rarity``: the same in decades;
    ``opened`` / ``escalated``: an ``open`` / ``escalate`` alert record on that row;
    ``ready``: the core's readiness; ``is_alert``: the row's score record alerted;
    ``drift_ms``: times of the drift and health records
    (``type`` drift or health); ``late``: rows the core did not score.
    """

    name: str
    score: FloatArray
    rarity: FloatArray
    opened: BoolArray
    escalated: BoolArray
    ready: BoolArray
    drift: list[tuple[int, str, str]] = field(default_factory=list)  # (ts_ms, type, check)
    is_alert: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    late: int = 0
    seconds: float = 0.0


def run_entity(name: str, events: Sequence[Event | None], cfg: DetectorConfig) -> EntityRun:
    """Run ``events`` (``None`` for a row that is not an event) through one detector."""
    t0 = time.monotonic()
    n = len(events)
    det = EntityDetector(name, cfg, with_features=False)
    score_recs: list[tuple[int, float, bool, bool, bool, bool]] = []
    drift: list[tuple[int, str, str]] = []
    late: set[int] = set()
    pending: set[str] = set()

    def consume(outputs: list[tuple[str, dict[str, Any]]], row: int) -> None:
        for kind, rec in outputs:
            if kind == "score":
                score_recs.append(
                    (rec["ts_ms"], rec["anomaly_score"], "open" in pending, "escalate" in pending,
                     bool(rec["ready"]), bool(rec["is_alert"]))
                )
                pending.clear()
            elif kind == "alert":
                pending.add(rec["kind"])
            elif kind == "late":
                late.add(row)
            elif kind == "drift" and rec.get("type") in ("drift", "health"):
                drift.append((int(rec["ts_ms"]), str(rec["type"]), str(rec.get("check") or rec.get("statistic"))))

    for row, ev in enumerate(events):
        if ev is not None:
            consume(det.on_event(ev), row)
    consume(det.flush(), -1)
    rows = [(row, ev) for row, ev in enumerate(events) if ev is not None and row not in late]
    rows.sort(key=lambda item: (item[1].ts_ms, item[1].to_json()))
    if len(rows) != len(score_recs):
        raise AssertionError(f"{name}: {len(rows)} events released, {len(score_recs)} scores")
    score = np.zeros(n)
    opened = np.zeros(n, dtype=bool)
    escalated = np.zeros(n, dtype=bool)
    ready = np.zeros(n, dtype=bool)
    is_alert = np.zeros(n, dtype=bool)
    for (row, ev), (ts_ms, s, op, esc, rdy, alert) in zip(rows, score_recs, strict=True):
        if ev.ts_ms != ts_ms:
            raise AssertionError(f"{name}: row {row} has ts_ms={ev.ts_ms}, its score {ts_ms}")
        score[row] = s
        opened[row] = op
        escalated[row] = esc
        ready[row] = rdy
        is_alert[row] = alert
    with np.errstate(divide="ignore"):
        rarity = -np.log10(np.maximum(1.0 - score, 1e-300))
    return EntityRun(
        name, score, rarity, opened, escalated, ready, drift, is_alert, len(late), time.monotonic() - t0
    )
