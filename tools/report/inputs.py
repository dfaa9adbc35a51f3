"""Reading a run folder: the scores per entity, the alerts as episodes, the other records,
and the metric values of the input events."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
# Rarity shown at most this high when the score file rounds (scores.csv has 6 decimals, so
# 1.000000 only says 1 - score < 5e-7).
_CSV_RARITY_CAP = -math.log10(5e-7)
_JSONL_RARITY_CAP = 12.0

MetricValues = dict[str, dict[str, tuple[list[int], list[float]]]]


class ReportError(ValueError):
    """A problem the user can fix (printed as one line by the CLI, exit code 2)."""


@dataclass
class Series:
    """One entity's scored events, in timestamp order."""

    ts: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    is_alert: list[bool] = field(default_factory=list)
    ready: list[bool] = field(default_factory=list)


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    return str(v).strip().lower() in ("1", "true", "yes")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, or none when the file is missing."""
    if not path.is_file():
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if isinstance(rec, dict):
                out.append(rec)
    return out


def scores_file(run: Path) -> Path:
    """The run's score file: ``scores.csv`` or ``scores.jsonl``, the newer when both are there."""
    cands = [p for p in (run / "scores.csv", run / "scores.jsonl") if p.is_file()]
    if not cands:
        inp = run / "input.jsonl" if (run / "input.jsonl").is_file() else "FILE"
        raise ReportError(
            f"no scores in {run} (neither scores.csv nor scores.jsonl): run "
            f"`python -m job replay --input {inp} --out {run}` first (or the Flink job with "
            "`--set sink.emit_scores=true`)"
        )
    # Both present: a replay and a job wrote into the same folder; the newer one is the run.
    return max(cands, key=lambda p: (p.stat().st_mtime_ns, p.suffix == ".jsonl"))


def rarity_cap(scores_path: Path) -> float:
    """The highest rarity the score file can tell apart."""
    return _CSV_RARITY_CAP if scores_path.suffix == ".csv" else _JSONL_RARITY_CAP


def read_scores(path: Path) -> dict[str, Series]:
    """The scores of ``path`` (CSV or JSON lines) per entity, each in timestamp order."""
    from udfs.core.events import parse_timestamp

    series: dict[str, Series] = {}

    def add(entity: str, ts: int | None, rec: dict[str, Any]) -> None:
        if ts is None:
            raise ReportError(f"{path}: bad timestamp in a score of {entity!r}")
        s = series.get(entity)
        if s is None:
            s = series[entity] = Series()
        s.ts.append(ts)
        s.score.append(float(rec["anomaly_score"]))
        s.threshold.append(float(rec["threshold"]))
        s.is_alert.append(_flag(rec["is_alert"]))
        s.ready.append(_flag(rec["ready"]))

    try:
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                need = {"entity", "timestamp", "anomaly_score", "threshold", "is_alert", "ready"}
                missing = need - set(reader.fieldnames or [])
                if missing:
                    raise ReportError(f"{path}: missing columns {', '.join(sorted(missing))}")
                for row in reader:
                    add(row["entity"], parse_timestamp(row["timestamp"]), row)
        else:
            for rec in read_jsonl(path):
                add(str(rec["entity"]), parse_timestamp(rec.get("ts_ms", rec.get("ts"))), rec)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError(f"{path}: not a score file of this job ({exc})") from None
    for s in series.values():
        if any(b < a for a, b in zip(s.ts, s.ts[1:], strict=False)):
            order = sorted(range(len(s.ts)), key=s.ts.__getitem__)
            for name in ("ts", "score", "threshold", "is_alert", "ready"):
                vals = getattr(s, name)
                setattr(s, name, [vals[i] for i in order])
    return series


def read_metrics(
    path: Path,
    late: list[dict[str, Any]],
    csv_opts: Any,
    entities: set[str],
) -> tuple[MetricValues, dict[str, int]]:
    """Per entity, per metric: (timestamps, values) of the events that were scored.

    Late events (listed in ``late.jsonl``) are left out here; the charts draw them apart.
    """
    from job.io import read_records
    from udfs.core.events import Event, ParseConfig

    late_left = Counter(str(rec.get("event", "")) for rec in late)
    per: MetricValues = {}
    stats = Counter[str]()
    try:
        for rec in read_records(path, ParseConfig(), csv_opts):
            if not isinstance(rec, Event):
                continue
            stats["events"] += 1
            if rec.entity not in entities:
                continue
            if late_left:
                key = rec.to_json()
                if late_left.get(key):
                    late_left[key] -= 1
                    continue
            m = per.setdefault(rec.entity, {})
            for name, v in rec.metrics.items():
                ts_list, vals = m.setdefault(name, ([], []))
                ts_list.append(rec.ts_ms)
                vals.append(v)
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a text file of events") from None
    for m in per.values():
        for name, (ts_list, vals) in list(m.items()):
            if any(b < a for a, b in zip(ts_list, ts_list[1:], strict=False)):
                pairs = sorted(zip(ts_list, vals, strict=True))
                m[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return per, dict(stats)


# -- episodes -------------------------------------------------------------------------------


@dataclass
class Episode:
    """The records of one alert episode (one ``alert_id``)."""

    alert_id: str
    entity: str
    start_ms: int
    records: list[dict[str, Any]]
    number: int = 0

    @property
    def open(self) -> dict[str, Any]:
        for r in self.records:
            if r.get("kind") == "open":
                return r
        return self.records[0]

    @property
    def resolved(self) -> dict[str, Any] | None:
        for r in self.records:
            if r.get("kind") == "resolved":
                return r
        return None

    @property
    def peak(self) -> str:
        sev: list[str] = [
            r.get("severity", "info") for r in self.records if r.get("kind") != "resolved"
        ]
        return max(sev or ["info"], key=lambda s: _SEVERITY_RANK.get(s, 0))

    def segments(self, end_ms: int) -> list[tuple[int, int, str]]:
        """(from, to, severity): the severity in force over the episode's life."""
        marks = [
            (ts_ms(r), r.get("severity", "info"))
            for r in self.records
            if r.get("kind") in ("open", "escalate")
        ]
        stop = ts_ms(self.resolved) if self.resolved else end_ms
        out = []
        for i, (t, sev) in enumerate(marks):
            t_next = marks[i + 1][0] if i + 1 < len(marks) else stop
            out.append((t, max(t_next, t), sev))
        return out


def ts_ms(rec: dict[str, Any]) -> int:
    """A record's time in epoch milliseconds: its ``ts_ms``, else its ``ts``."""
    from udfs.core.events import parse_timestamp

    v = rec.get("ts_ms")
    if isinstance(v, int):
        return v
    ts = parse_timestamp(rec.get("ts"))
    if ts is None:
        raise ReportError(f"a record without a usable ts: {json.dumps(rec)[:200]}")
    return ts


def drift_ts(rec: dict[str, Any]) -> int | None:
    """When a drift or health record was raised: its ``ts_ms``/``ts``, else the end of its
    ``current`` span (the records of :mod:`udfs.core.drift` carry their windows)."""
    from udfs.core.events import parse_timestamp

    for v in (rec.get("ts_ms"), rec.get("ts"), (rec.get("current") or {}).get("to_ts")):
        if v is not None:
            ts = parse_timestamp(v)
            if ts is not None:
                return ts
    return None


def episodes(alerts: list[dict[str, Any]]) -> list[Episode]:
    """The alert records grouped into episodes, numbered in order of opening."""
    from udfs.core.events import parse_timestamp

    by_id: dict[str, Episode] = {}
    for rec in alerts:
        aid = str(rec.get("alert_id", ""))
        ep = by_id.get(aid)
        if ep is None:
            start = parse_timestamp(rec.get("start_ts"))
            by_id[aid] = ep = Episode(
                aid, str(rec.get("entity", "")), start if start is not None else ts_ms(rec), []
            )
        ep.records.append(rec)
    kind_order = {"open": 0, "escalate": 1, "resolved": 2}
    eps = sorted(by_id.values(), key=lambda e: (e.start_ms, e.entity, e.alert_id))
    for n, ep in enumerate(eps, 1):
        ep.number = n
        ep.records.sort(key=lambda r: (ts_ms(r), kind_order.get(r.get("kind", ""), 3)))
    return eps


# -- the run ----------------------------------------------------------------------------------


def _by_entity(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        out.setdefault(str(rec.get("entity", "")), []).append(rec)
    return out


@dataclass
class Run:
    """A run folder as read: scores per entity, alert episodes, drift, dead and late records."""

    path: Path
    scores_path: Path
    series: dict[str, Series]
    drift: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    late: list[dict[str, Any]]
    episodes: list[Episode]
    episodes_by_entity: dict[str, list[Episode]] = field(init=False)
    drift_by_entity: dict[str, list[dict[str, Any]]] = field(init=False)
    late_by_entity: dict[str, list[dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.episodes_by_entity = {}
        for ep in self.episodes:
            self.episodes_by_entity.setdefault(ep.entity, []).append(ep)
        self.drift_by_entity = _by_entity(self.drift)
        self.late_by_entity = _by_entity(self.late)

    @property
    def events(self) -> int:
        """The number of events scored, over every entity."""
        return sum(len(s.ts) for s in self.series.values())


def read_run(run: Path) -> Run:
    """Read the run folder ``run``; a :class:`ReportError` when it is missing or has no scores."""
    if not run.is_dir():
        raise ReportError(
            f"run folder not found: {run}: run `python -m job replay --input FILE --out {run}` "
            f"(or `python -m job demo --out {run}`) first"
        )
    scores_path = scores_file(run)
    series = read_scores(scores_path)
    if not series:
        raise ReportError(f"{scores_path} holds no scores: was the input empty?")
    alerts = read_jsonl(run / "alerts.jsonl")
    drift = read_jsonl(run / "drift.jsonl")
    dead = read_jsonl(run / "dead_letter.jsonl")
    late = read_jsonl(run / "late.jsonl")
    return Run(run, scores_path, series, drift, dead, late, episodes(alerts))


def input_file(run: Path, input_path: str | Path | None) -> Path | None:
    """The input events: ``input_path``, else ``run/input.jsonl`` when present, else none."""
    inp: Path | None = Path(input_path) if input_path else None
    if inp is not None and not inp.is_file():
        raise FileNotFoundError(f"input file not found: {inp}")
    if inp is None and (run / "input.jsonl").is_file():
        inp = run / "input.jsonl"
    return inp


def metric_values(
    inp: Path | None, csv_opts: Any, run: Run, chosen: list[str]
) -> tuple[MetricValues, dict[str, int]]:
    """The metric values of the ``chosen`` entities in ``inp``, and counts of its events."""
    if inp is None:
        return {}, {}
    all_entities = sorted(run.series)
    if inp.suffix.lower() == ".csv" and csv_opts is None:
        from job.io import CsvOptions

        csv_opts = CsvOptions()
    if inp.suffix.lower() == ".csv" and not (csv_opts.entity_column or csv_opts.entity):
        if len(all_entities) != 1:
            raise ReportError("CSV input: pass --entity-column COLUMN or --csv-entity NAME")
        from dataclasses import replace

        csv_opts = replace(csv_opts, entity=all_entities[0])
    return read_metrics(inp, run.late, csv_opts, set(chosen))
