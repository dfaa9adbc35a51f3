"""From per-event decisions to alerts an on-call engineer can act on: episodes.

Consecutive anomalous events of one entity form an *episode*. An episode produces one
``open`` record, an ``escalate`` record each time its severity rises above the highest so far,
and one ``resolved`` record once ``quiet_events`` consecutive events (and ``quiet_period_ms``
of event time) have passed without an anomalous one (decided on the entity's next event,
since event time only moves with events). After an episode resolves, a new one of the same
or lower severity cannot open for ``cooldown_ms`` (a higher severity can): anomalous events
held back are counted as suppressed, and the count travels on the next alert that gets out,
so nothing is hidden without a trace.

The ``alert_id`` is derived from the entity and the episode's start timestamp only, so a
replay, a restore from a checkpoint, or a second run produce the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

# (In a module of its own so that a compiled copy of this one, scripts/build_native.py, uses
# the same configuration class as the rest of the job.)
from udfs.core.alert_config import AlertConfig
from udfs.core.events import format_timestamp

__all__ = ["AlertConfig", "EpisodeTracker", "SEVERITIES", "alert_id"]

SEVERITIES = ("info", "warning", "critical")
ALERT_SCHEMA_VERSION = 1


def alert_id(entity: str, start_ts_ms: int) -> str:
    """Deterministic id of the episode of ``entity`` that started at ``start_ts_ms``.

    >>> alert_id("srv-1", 1767225600000)
    'c9415e2b49c2b9f3'
    """
    return hashlib.sha256(f"{entity}\x00{start_ts_ms}".encode()).hexdigest()[:16]


_HOUR_MS = 3_600_000


class EpisodeTracker:
    """The alerting state of one entity. ``on_decision`` returns the records to emit."""

    __slots__ = (
        "cfg",
        "entity",
        "_open",
        "_start_ts",
        "_last_anomalous_ts",
        "_quiet",
        "_level",
        "_closed_ts",
        "_closed_level",
        "_suppressed",
        "_hour_start",
        "_hour_count",
        "_peak",
        "_filtered",
        "_filtered_count",
    )

    def __init__(self, cfg: AlertConfig, entity: str) -> None:
        self.cfg = cfg
        self.entity = entity
        self._open = False
        self._start_ts = 0
        self._last_anomalous_ts = 0
        self._quiet = 0  # events since the last anomalous one of the open episode
        self._level = -1
        self._closed_ts: int | None = None
        self._closed_level = -1
        self._suppressed = 0
        self._hour_start = 0
        self._hour_count = 0
        self._peak: dict[str, Any] = {}
        self._filtered = ""  # alert_id of the episode the alert filter held back
        self._filtered_count = 0

    @property
    def open(self) -> bool:
        return self._open

    @property
    def suppressed(self) -> int:
        return self._suppressed

    def suppress(self) -> None:
        """Count an anomalous event held back by the caller (a maintenance window): the
        count travels on the next record out, like the cooldown's."""
        self._suppressed += 1

    def on_decision(
        self, ts_ms: int, anomalous: bool, severity: int, detail: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Advance the entity's episode with one scored event.

        ``severity`` indexes :data:`SEVERITIES`; ``detail`` holds the alert body (score,
        threshold, direction, features, config_version) for this event.
        """
        out: list[dict[str, Any]] = []
        cfg = self.cfg
        if (
            self._open
            and self._quiet >= cfg.quiet_events
            and ts_ms - self._last_anomalous_ts >= cfg.quiet_period_ms
        ):
            out.extend(self.close(ts_ms, "quiet"))
        if not anomalous:
            if self._open:
                self._quiet += 1
            return out
        if self._open:
            self._last_anomalous_ts = ts_ms
            self._quiet = 0
            if severity > self._level:
                self._level = severity
                self._peak = detail
                out.append(self._record("escalate", ts_ms, detail))
            return out
        # A new episode wants to open: cooldown and rate limit first. The cooldown holds back
        # a repeat of what just resolved, not something worse: a higher severity than the
        # last episode's peak opens anyway.
        if (
            self._closed_ts is not None
            and ts_ms - self._closed_ts < cfg.cooldown_ms
            and severity <= self._closed_level
        ):
            self._suppressed += 1
            return out
        if ts_ms - self._hour_start >= _HOUR_MS:
            self._hour_start = ts_ms
            self._hour_count = 0
        if self._hour_count >= cfg.max_alerts_per_hour:
            self._suppressed += 1
            return out
        self._hour_count += 1
        self._open = True
        self._start_ts = ts_ms
        self._last_anomalous_ts = ts_ms
        self._quiet = 0
        self._level = severity
        self._peak = detail
        out.append(self._record("open", ts_ms, detail))
        return out

    def close(self, ts_ms: int, resolution: str) -> list[dict[str, Any]]:
        """Resolve the open episode, if any: ``quiet`` period passed or entity ``idle``."""
        if not self._open:
            return []
        rec = self._record("resolved", ts_ms, self._peak)
        rec["resolution"] = resolution
        self._open = False
        self._closed_ts = ts_ms
        self._closed_level = self._level
        self._level = -1
        return [rec]

    def _record(self, kind: str, ts_ms: int, detail: dict[str, Any]) -> dict[str, Any]:
        aid = alert_id(self.entity, self._start_ts)
        fill = {
            "entity": self.entity,
            "alert_id": aid,
            "start_ts": format_timestamp(self._start_ts),
            "ts": format_timestamp(ts_ms),
        }
        rec: dict[str, Any] = {
            "schema_version": ALERT_SCHEMA_VERSION,
            "alert_id": aid,
            "kind": kind,
            "entity": self.entity,
            "start_ts": fill["start_ts"],
            "ts": fill["ts"],
            "ts_ms": ts_ms,
            "severity": SEVERITIES[max(self._level, 0)],
        }
        rec.update(detail)
        rec["suppressed_before"] = self._suppressed
        rec["runbook_url"] = self.cfg.runbook_url.format(**fill)
        rec["dashboard_url"] = self.cfg.dashboard_url.format(**fill)
        if kind != "resolved":
            self._suppressed = 0
        return rec

    def screen(
        self, records: list[dict[str, Any]], drop: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """Apply the alert filter (:mod:`udfs.core.alert_filter`) to this entity's records.

        ``drop`` judges ``open`` records; a dropped ``open`` takes its episode with it (its
        escalations and resolution). Each record held back is counted, and the count rides
        on the next record of the entity that gets out as ``filtered_before``.
        """
        out = []
        for rec in records:
            aid = rec["alert_id"]
            if rec["kind"] == "open":
                if drop(rec):
                    self._filtered = aid
                    self._filtered_count += 1
                    continue
                self._filtered = ""
            elif aid == self._filtered:
                self._filtered_count += 1
                if rec["kind"] == "resolved":
                    self._filtered = ""
                continue
            if self._filtered_count:
                rec["filtered_before"] = self._filtered_count
                self._filtered_count = 0
            out.append(rec)
        return out

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self._open,
            self._start_ts,
            self._last_anomalous_ts,
            self._level,
            self._closed_ts,
            self._closed_level,
            self._suppressed,
            self._hour_start,
            self._hour_count,
            self._peak,
            self._filtered,
            self._filtered_count,
            self._quiet,
        )

    def restore(self, snap: tuple[Any, ...]) -> None:
        if len(snap) == 10:  # state written before the alert filter
            snap = (*snap, "", 0)
        if len(snap) == 12:  # before episodes counted quiet events: as many as it takes
            snap = (*snap, 1 << 30)
        (
            self._open,
            self._start_ts,
            self._last_anomalous_ts,
            self._level,
            self._closed_ts,
            self._closed_level,
            self._suppressed,
            self._hour_start,
            self._hour_count,
            self._peak,
            self._filtered,
            self._filtered_count,
            self._quiet,
        ) = snap


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions. Only the classes below
# are taken from it; configuration classes stay pure (they travel pickled with the operator).
if __name__ == "udfs.core.alerts":
    from udfs.core.native import bind

    bind(globals(), __file__, "alerts")
