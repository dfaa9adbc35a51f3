"""Reading inputs (JSON lines, CSV) and writing the replay's outputs.

CSV input (replay only): ``--ts-column`` names the timestamp column (ISO-8601 or epoch
milliseconds), ``--entity-column`` the entity column or ``--entity NAME`` one entity for the
whole file, and the metrics are ``--metrics a,b`` or every other column. A row with a bad
value becomes a dead letter, as a bad JSON line does.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from udfs.core.config import DetectorConfig
from udfs.core.events import (
    DeadLetter,
    Event,
    ParseConfig,
    format_timestamp,
    parse_object,
)
from udfs.core.features import feature_names
from udfs.core.feedback import Verdict, parse_event_or_verdict
from udfs.core.ratelimit import gate_alerts
from udfs.core.replay import replay

__all__ = ["CsvOptions", "read_records", "write_replay"]


@dataclass(frozen=True)
class CsvOptions:
    ts_column: str = "timestamp"
    entity_column: str | None = None
    entity: str | None = None
    metrics: tuple[str, ...] = ()


def _csv_records(f: IO[str], opts: CsvOptions, cfg: ParseConfig) -> Iterator[Event | DeadLetter]:
    reader = csv.DictReader(f)
    fields = reader.fieldnames or []
    missing = [c for c in (opts.ts_column, opts.entity_column) if c and c not in fields]
    missing += [m for m in opts.metrics if m not in fields]
    if missing:
        raise ValueError(
            f"CSV columns not found: {', '.join(missing)} (columns: {', '.join(fields)})"
        )
    if not opts.entity_column and not opts.entity:
        raise ValueError("CSV input needs --entity-column COLUMN or --entity NAME")
    metric_cols = list(opts.metrics) or [
        c for c in fields if c not in (opts.ts_column, opts.entity_column)
    ]
    for row in reader:
        raw = json.dumps(row, separators=(",", ":"))
        metrics: dict[str, Any] = {}
        for c in metric_cols:
            v = (row.get(c) or "").strip()
            if v == "":
                continue  # a missing value: that metric is absent from this event
            try:
                metrics[c] = float(v)
            except ValueError:
                metrics[c] = v  # the parser turns it into a dead letter naming the field
        obj = {
            "entity": row.get(opts.entity_column) if opts.entity_column else opts.entity,
            "ts": row.get(opts.ts_column),
            "metrics": metrics,
        }
        yield parse_object(obj, raw, cfg)


def read_records(
    path: str | Path, cfg: ParseConfig, csv_opts: CsvOptions | None = None
) -> Iterator[Event | Verdict | DeadLetter]:
    """Events, verdicts and dead letters of a JSON-lines file (a line with a ``verdict`` key
    is an operator verdict, see :func:`udfs.core.feedback.parse_event_or_verdict`), or the
    events and dead letters of a CSV file with ``csv_opts``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"input file not found: {p}")
    with open(p, newline="" if csv_opts else None) as f:
        if csv_opts is not None:
            yield from _csv_records(f, csv_opts, cfg)
            return
        for line in f:
            line = line.rstrip("\n")
            if line.strip():
                yield parse_event_or_verdict(line, cfg)


class _Progress:
    """A progress line on stderr, only for runs longer than a couple of seconds."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = self.start

    def tick(self, n: int) -> None:
        if not self.enabled or n % 2000:
            return
        now = time.monotonic()
        if now - self.start < 2.0 or now - self.last < 0.5:
            return
        self.last = now
        rate = n / (now - self.start)
        if self.total:
            pct = 100.0 * n / self.total
            eta = (self.total - n) / rate if rate else 0.0
            sys.stderr.write(
                f"\rreplay: {n:,}/{self.total:,} events ({pct:5.1f} %), {rate:,.0f}/s, {eta:,.0f} s left "
            )
        else:
            sys.stderr.write(f"\rreplay: {n:,} events, {rate:,.0f}/s ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and time.monotonic() - self.start >= 2.0:
            sys.stderr.write("\n")


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))


def _raw(value: float | None) -> str:
    """A model's raw score in ``scores.csv`` (empty when the model did not score)."""
    return "" if value is None else f"{value:.6g}"


def write_replay(
    records: Iterable[Event | Verdict | DeadLetter],
    cfg: DetectorConfig,
    out_dir: str | Path,
    emit_features: bool = False,
    total: int | None = None,
    progress: bool = True,
    feature_metrics: Sequence[str] | None = None,
) -> Counter[str]:
    """Run the core over ``records``; write ``scores.csv`` and the JSON-lines outputs.

    With ``emit_features``, ``feature_metrics`` names every metric of the input (so an
    entity whose metrics appear late still gets its columns); without it, the columns are
    those of the first scored event.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: open(out / f"{k}.jsonl", "w") for k in ("alerts", "drift", "dead_letter", "late")}
    counts: Counter[str] = Counter()
    bar = _Progress(total, progress)
    feature_cols: list[str] | None = None
    # The job's global alert limit (udfs/gate.py) judges a whole run's alerts in order.
    gate_max = cfg.alerts.global_max_per_hour
    held: list[tuple[str, dict[str, Any]]] = []
    with open(out / "scores.csv", "w", newline="") as sf:
        writer = csv.writer(sf)
        base_cols = [
            "entity",
            "timestamp",
            "anomaly_score",
            "threshold",
            "is_alert",
            "ready",
            *(f"raw_{name}" for name in cfg.model.ensemble),
        ]
        try:
            for kind, rec in replay(records, cfg):
                counts[kind] += 1
                if kind == "score":
                    bar.tick(counts["score"])
                    if feature_cols is None:
                        if not emit_features:
                            feature_cols = []
                        elif feature_metrics is not None:
                            feature_cols = feature_names(cfg.features, list(feature_metrics))
                        else:
                            feature_cols = _feature_columns(cfg, rec)
                        writer.writerow(base_cols + feature_cols)
                    row = [
                        rec["entity"],
                        format_timestamp(rec["ts_ms"]),
                        f"{rec['anomaly_score']:.6f}",
                        f"{rec['threshold']:.6f}",
                        rec["is_alert"],
                        rec["ready"],
                        *(_raw(rec["raw"].get(name)) for name in cfg.model.ensemble),
                    ]
                    if feature_cols:
                        feats = rec["features"]
                        row += [_fmt(feats.get(c)) for c in feature_cols]
                    writer.writerow(row)
                elif kind == "alert" and gate_max:
                    held.append((kind, rec))  # judged at the end, in event-time order
                else:
                    name = "alerts" if kind == "alert" else kind
                    files[name].write(json.dumps(rec, sort_keys=True) + "\n")
            counts["alert"] -= len(held)
            for kind, rec in gate_alerts(held, gate_max):
                counts[kind] += 1
                name = "alerts" if kind == "alert" else kind
                files[name].write(json.dumps(rec, sort_keys=True) + "\n")
            if feature_cols is None:
                writer.writerow(base_cols)
        finally:
            for f in files.values():
                f.close()
            bar.done()
    return counts


def _feature_columns(cfg: DetectorConfig, first: dict[str, Any]) -> list[str]:
    metrics = sorted({k[: -len(".dt")] for k in first["features"] if k.endswith(".dt")})
    return feature_names(cfg.features, metrics)


def input_metrics(records: Iterable[Event | Verdict | DeadLetter]) -> list[str]:
    """Every metric name of the valid events, sorted."""
    names: set[str] = set()
    for rec in records:
        if isinstance(rec, Event):
            names.update(rec.metrics)
    return sorted(names)


def _fmt(v: Any) -> str:
    if v is None or v != v:
        return ""
    return f"{v:.6g}"


def count_lines(path: str | Path) -> int:
    return _count_lines(Path(path))
