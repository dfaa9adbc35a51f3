"""Alert episodes as Alertmanager alerts (its v2 API), for ``python -m job forward-alerts``.

The job writes each episode as records of one ``alert_id``: ``open``, any ``escalate``, then
``resolved`` (job/schemas/alert.schema.json). :class:`AlertBook` turns that sequence into the
alerts Alertmanager's ``POST /api/v2/alerts`` takes, and remembers the episodes still open so
that they can be sent again (Alertmanager forgets an alert whose ``endsAt`` passes, the way it
forgets a Prometheus alert that stops being sent).

Identity. Alertmanager tells alerts apart by their label set. The labels of an episode are
fixed when it opens: ``alertname`` (:data:`ALERTNAME`), ``alert_id``, ``entity``,
``direction`` and ``metric`` (the metric of the leading feature), plus ``severity``. Sending
the same episode twice (a forwarder restart, a replay of the topic) gives the same label set,
which Alertmanager merges into one alert: delivery is idempotent by ``alert_id``. An
``escalate`` changes ``severity``, so it ends the alert of the old severity (``endsAt`` the
escalation's time) and starts the one of the new severity: at any time an episode has one
firing alert, under its current severity, which is what routing by severity needs.

Times. ``startsAt`` is the episode's ``start_ts`` (event time). A firing alert's ``endsAt``
is the wall clock plus ``hold_s``: the forwarder sends open episodes again every
``hold_s / 4`` seconds, so an alert ends on its own only when its forwarder has been gone
for ``hold_s``. A resolved episode's ``endsAt`` is its record's event time, at most the
wall clock.

Annotations carry the explanation: ``summary`` (one line), ``description`` (the leading
features, actual against expected with their z), ``runbook_url``, ``dashboard_url``,
``score``, ``threshold``; ``generatorURL`` is the dashboard link.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from udfs.core.alert_filter import metric_of

__all__ = ["ALERTNAME", "AlertBook", "Episode", "to_alertmanager"]

#: The ``alertname`` label of every alert the forwarder sends.
ALERTNAME = "EntityAnomaly"


def _iso(ms: float) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _num(x: Any) -> str:
    return f"{float(x):.4g}" if isinstance(x, (int, float)) else str(x)


def describe(record: dict[str, Any]) -> tuple[str, str]:
    """(summary, description) of an alert record, from its entity and leading features.

    >>> describe({"entity": "db-1", "severity": "warning", "direction": "spike",
    ...           "features": [{"feature": "cpu.baseline", "actual": 93.1, "expected": 41.0,
    ...                         "z": 6.2}]})
    ('db-1: cpu spike (warning)', 'cpu.baseline 93.1, expected 41 (z 6.2)')
    """
    feats = record.get("features") or []
    metric = metric_of(str(feats[0]["feature"])) if feats else "?"
    summary = f"{record['entity']}: {metric} {record['direction']} ({record['severity']})"
    description = "; ".join(
        f"{f['feature']} {_num(f.get('actual'))}, expected {_num(f.get('expected'))}"
        f" (z {_num(f.get('z'))})"
        for f in feats
    )
    return summary, description


@dataclasses.dataclass
class Episode:
    """One alert episode as the forwarder knows it."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    generator_url: str
    resolved_ms: float | None = None

    def alert(self, ends_at: str) -> dict[str, Any]:
        """The alert in Alertmanager's v2 form (``postableAlert``)."""
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": ends_at,
            "generatorURL": self.generator_url,
        }


class AlertBook:
    """Open episodes by ``alert_id``, and the alerts each new record calls for.

    >>> book = AlertBook(hold_s=240)
    >>> rec = {"alert_id": "a1", "kind": "open", "entity": "db-1", "severity": "info",
    ...        "direction": "spike", "start_ts": "2026-01-01T07:37:00.000Z",
    ...        "ts_ms": 1767253020000, "score": 0.9998, "threshold": 0.9996,
    ...        "runbook_url": "r", "dashboard_url": "d",
    ...        "features": [{"feature": "cpu.baseline", "actual": 90, "expected": 40, "z": 5}]}
    >>> [a["labels"]["severity"] for a in book.apply(rec, now_ms=1767253030000)]
    ['info']
    >>> sent = book.apply(dict(rec, kind="escalate", severity="critical"), now_ms=1767253040000)
    >>> [(a["labels"]["severity"], a["endsAt"]) for a in sent]
    [('info', '2026-01-01T07:37:00.000Z'), ('critical', '2026-01-01T07:41:20.000Z')]
    >>> sent = book.apply(dict(rec, kind="resolved", severity="critical",
    ...                        ts_ms=1767253320000), now_ms=1767253400000)
    >>> [(a["labels"]["severity"], a["endsAt"]) for a in sent], book.firing(now_ms=1767253400000)
    ([('critical', '2026-01-01T07:42:00.000Z')], [])
    """

    def __init__(self, hold_s: float = 240.0) -> None:
        self.hold_s = hold_s
        self._open: dict[str, Episode] = {}

    def _ends(self, now_ms: float) -> str:
        return _iso(now_ms + self.hold_s * 1000.0)

    def apply(self, record: dict[str, Any], now_ms: float) -> list[dict[str, Any]]:
        """The alerts to send for one alert record (in order), updating the open episodes."""
        aid = str(record["alert_id"])
        kind = record.get("kind")
        ep = self._open.get(aid)
        out: list[dict[str, Any]] = []
        summary, description = describe(record)
        annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": str(record.get("runbook_url", "")),
            "dashboard_url": str(record.get("dashboard_url", "")),
            "score": _num(record.get("score")),
            "threshold": _num(record.get("threshold")),
        }
        event_ms = min(float(record["ts_ms"]), now_ms)
        if ep is None:
            feats = record.get("features") or []
            ep = Episode(
                labels={
                    "alertname": ALERTNAME,
                    "alert_id": aid,
                    "entity": str(record["entity"]),
                    "severity": str(record["severity"]),
                    "direction": str(record["direction"]),
                    "metric": metric_of(str(feats[0]["feature"])) if feats else "",
                },
                annotations=annotations,
                starts_at=str(record["start_ts"]),
                generator_url=str(record.get("dashboard_url", "")),
            )
            self._open[aid] = ep
        elif kind != "resolved":
            if record["severity"] != ep.labels["severity"]:
                out.append(ep.alert(_iso(event_ms)))  # the old severity's alert ends
                ep.labels = dict(ep.labels, severity=str(record["severity"]))
            ep.annotations = annotations
        if kind == "resolved":
            del self._open[aid]
            out.append(ep.alert(_iso(event_ms)))
        else:
            out.append(ep.alert(self._ends(now_ms)))
        return out

    def firing(self, now_ms: float) -> list[dict[str, Any]]:
        """Every open episode's alert, to send again."""
        ends = self._ends(now_ms)
        return [ep.alert(ends) for ep in self._open.values()]

    def __len__(self) -> int:
        return len(self._open)


def to_alertmanager(records: Iterable[str], now_ms: float, hold_s: float = 240.0) -> list[dict[str, Any]]:
    """Every alert a list of alert records (JSON lines) calls for, in order (for tests and
    for ``forward-alerts --dry-run``)."""
    book = AlertBook(hold_s)
    out: list[dict[str, Any]] = []
    for line in records:
        out += book.apply(json.loads(line), now_ms)
    return out
