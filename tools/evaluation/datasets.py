"""The labelled benchmarks the evaluation runs, as series of events (one entity each).

Each loader reads a benchmark folder as published in ``../shared/data`` (never copied into
the project) and returns :class:`Series`: the events in row order, the row labels (1 inside
a labelled anomaly) and the first row that is scored, following each benchmark's protocol:

- **NAB** (``nab/``, Numenta Anomaly Benchmark v1.1): 58 univariate series, each its own
  entity, metric ``value``; labels from ``labels/combined_windows.json`` (limits
  included). NAB's own scoring (:mod:`tools.evaluation.nab_scoring`) decides which rows count.
- **ASD** (``asd/``, six application servers): per server the train rows then the test rows
  as one stream at a 5-minute spacing from 2026-01-01T00:00Z (the files carry no time),
  19 metrics ``m0 .. m18``; only the test rows are scored.
- **SKAB** (``skab/``, a water-circulation rig): 34 experiments, each its own entity, 8
  sensors at 1-second spacing (the ``datetime`` column, read as UTC); the first 400 rows are
  normal and only the rows after them are scored. ``anomaly-free/anomaly-free.csv`` is one
  more series with no anomaly (false alarms).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from udfs.core.events import Event

__all__ = ["Series", "load_asd", "load_nab", "load_skab"]

ASD_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ASD_STEP_MS = 300_000
SKAB_SCORED_FROM = 400
SKAB_SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


@dataclass
class Series:
    """One entity of a benchmark: its events in row order, the labels of its rows (None
    when it has none) and the first row the benchmark scores."""

    name: str
    events: list[Event | None]
    labels: npt.NDArray[np.int64] | None
    scored_from: int = 0

    @property
    def days(self) -> float:
        ts = [e.ts_ms for e in self.events if e is not None]
        return (max(ts) - min(ts)) / 86_400_000 if ts else 0.0


def load_asd(root: str | Path, servers: int = 6) -> list[Series]:
    """The six ASD servers, train rows then test rows (see the module docstring)."""
    out = []
    for n in range(1, servers + 1):
        train = pd.read_csv(Path(root) / f"omi-{n}_train.csv")
        test = pd.read_csv(Path(root) / f"omi-{n}_test.csv")
        cols = [c for c in train.columns if c != "label"]
        values = np.vstack([train[cols].to_numpy(float), test[cols].to_numpy(float)])
        name = f"asd/omi-{n}"
        events: list[Event | None] = [
            Event(name, ASD_START_MS + i * ASD_STEP_MS, dict(zip(cols, map(float, row), strict=True)))
            for i, row in enumerate(values.tolist())
        ]
        labels = np.concatenate([np.zeros(len(train), dtype=np.int64), test["label"].to_numpy(np.int64)])
        out.append(Series(name, events, labels, len(train)))
    return out


def _skab_file(path: Path, name: str) -> tuple[list[Event | None], npt.NDArray[np.int64]]:
    df = pd.read_csv(path, sep=";")
    ts = pd.to_datetime(df["datetime"]).dt.tz_localize("UTC").astype("int64") // 1_000_000
    values = df[list(SKAB_SENSORS)].to_numpy(float).tolist()
    events: list[Event | None] = [
        Event(name, int(t), dict(zip(SKAB_SENSORS, map(float, row), strict=True)))
        for t, row in zip(ts.tolist(), values, strict=True)
    ]
    labels = df["anomaly"].fillna(0).to_numpy().astype(np.int64) if "anomaly" in df else np.zeros(len(df), dtype=np.int64)
    return events, labels


def load_skab(root: str | Path, with_free: bool = True) -> list[Series]:
    """The 34 SKAB experiments (and, with ``with_free``, the anomaly-free run)."""
    base = Path(root)
    out = []
    for group in ("valve1", "valve2", "other"):
        for path in sorted((base / group).glob("*.csv"), key=lambda p: int(p.stem)):
            name = f"skab/{group}/{path.stem}"
            events, labels = _skab_file(path, name)
            out.append(Series(name, events, labels, SKAB_SCORED_FROM))
    if with_free:
        events, _ = _skab_file(base / "anomaly-free" / "anomaly-free.csv", "skab/anomaly-free")
        out.append(Series("skab/anomaly-free", events, None, SKAB_SCORED_FROM))
    return out


def load_nab(root: str | Path) -> list[Series]:
    """The 58 NAB series (labels: rows inside a window, limits included)."""
    base = Path(root)
    with open(base / "labels" / "combined_windows.json") as f:
        windows: dict[str, list[list[str]]] = json.load(f)
    out = []
    for path in sorted((base / "data").glob("*/*.csv")):
        rel = path.relative_to(base / "data").as_posix()
        with open(path, newline="") as f:
            rows = [(r["timestamp"], float(r["value"])) for r in csv.DictReader(f)]
        ts = pd.to_datetime([t for t, _ in rows]).as_unit("ms").asi8
        events: list[Event | None] = [
            Event(rel, int(t), {"value": v}) for t, (_, v) in zip(ts.tolist(), rows, strict=True)
        ]
        labels = np.zeros(len(rows), dtype=np.int64)
        for start, end in windows.get(rel, []):
            lo = int(pd.Timestamp(start).value // 1_000_000)
            hi = int(pd.Timestamp(end).value // 1_000_000)
            labels[(ts >= lo) & (ts <= hi)] = 1
        out.append(Series(rel, events, labels, 0))
    return out
