"""A global cap on alerts per hour of event time: the last guard of an on-call's pager.

The per-entity cap of :class:`udfs.core.alerts.AlertConfig` stops one flapping entity; this
one stops a fleet-wide storm (a network blip that makes every entity anomalous at once).
:class:`GlobalRateLimiter` lets at most ``max_per_hour`` alerts through in any sliding hour of
event time and counts the rest.

The window is ``(now - 1 h, now]``, where ``now`` is the newest timestamp the limiter has
seen: an alert is allowed when fewer than ``max_per_hour`` allowed alerts have timestamps in
that window. An alert older than ``now`` (alerts of different entities arrive slightly out of
order) is judged against the same window; event time never runs backwards. With input in
timestamp order, no hour ``(t - 1 h, t]`` ever holds more than ``max_per_hour`` allowed
alerts. The result depends only on the sequence of timestamps (no wall clock); memory is at
most ``max_per_hour`` timestamps.

It lives in one operator instance (all alerts of a job through one key, or one limiter per
parallel instance with a share of the budget each): the decision for an alert depends on the
order alerts reach that instance.

Examples
--------
>>> lim = GlobalRateLimiter(max_per_hour=2)
>>> [lim.allow(t * 60_000) for t in (0, 10, 20, 59, 60, 70)]
[True, True, False, False, True, True]
>>> lim.suppressed
2
"""

from __future__ import annotations

import heapq
from typing import Any

from udfs.core.events import format_timestamp

__all__ = ["HOUR_MS", "GlobalAlertGate", "GlobalRateLimiter", "alert_order", "gate_alerts"]

HOUR_MS = 3_600_000


class GlobalRateLimiter:
    """At most ``max_per_hour`` allowed alerts in any sliding hour of event time.

    Parameters
    ----------
    max_per_hour
        Alerts allowed per sliding hour (>= 1).
    """

    __slots__ = ("max_per_hour", "_now", "_allowed", "_suppressed", "_pending")

    def __init__(self, max_per_hour: int) -> None:
        if isinstance(max_per_hour, bool) or not isinstance(max_per_hour, int) or max_per_hour < 1:
            raise ValueError(f"max_per_hour must be an integer >= 1, got {max_per_hour!r}")
        self.max_per_hour = max_per_hour
        self._now: int | None = None
        self._allowed: list[int] = []  # a min-heap of the allowed timestamps in the window
        self._suppressed = 0
        self._pending = 0

    def allow(self, ts_ms: int) -> bool:
        """Whether an alert at ``ts_ms`` may go out; counts it as suppressed when not."""
        if self._now is None or ts_ms > self._now:
            self._now = ts_ms
        heap = self._allowed
        oldest_kept = self._now - HOUR_MS  # timestamps <= this are out of the window
        while heap and heap[0] <= oldest_kept:
            heapq.heappop(heap)
        if len(heap) >= self.max_per_hour:
            self._suppressed += 1
            self._pending += 1
            return False
        heapq.heappush(heap, ts_ms)
        self._pending = 0
        return True

    def count_suppressed(self) -> None:
        """Count an alert held back for another reason (a suppressed episode's follow-up)."""
        self._suppressed += 1
        self._pending += 1

    def take_pending(self) -> int:
        """Return :attr:`suppressed_since_allowed` and restart it from 0."""
        n, self._pending = self._pending, 0
        return n

    @property
    def suppressed(self) -> int:
        """Alerts suppressed since the limiter was created (or restored)."""
        return self._suppressed

    @property
    def suppressed_since_allowed(self) -> int:
        """Alerts suppressed since the last allowed one (to carry on the next alert out)."""
        return self._pending

    def snapshot(self) -> tuple[int | None, list[int], int, int]:
        """The state as plain data."""
        return (self._now, sorted(self._allowed), self._suppressed, self._pending)

    def restore(self, snap: tuple[Any, ...] | list[Any]) -> None:
        now, allowed, suppressed, pending = snap
        self._now = now
        self._allowed = sorted(allowed)
        self._suppressed = suppressed
        self._pending = pending


_KIND_ORDER = {"open": 0, "escalate": 1, "resolved": 2}


def alert_order(rec: dict[str, Any]) -> tuple[int, int, str, str]:
    """The order in which the gate judges alert records: event time first, then a fixed rule
    for ties, so the decisions never depend on the arrival interleaving of entities."""
    return (rec["ts_ms"], _KIND_ORDER.get(rec["kind"], 3), rec["alert_id"], rec["entity"])


class GlobalAlertGate:
    """The global rate limit applied to alert records, whole episodes at a time.

    ``open`` and ``escalate`` records (the ones that page) take budget from a
    :class:`GlobalRateLimiter`; a suppressed ``open`` suppresses its whole episode (its
    escalations and its ``resolved`` record too, so nobody gets a resolution of an alert they
    never saw). Every record held back is counted; the next record that gets out carries the
    count as ``suppressed_global``. When suppression starts, one ``alert_storm`` health
    record goes out (on the drift/health output); the next allowed alert re-arms it.

    Records must be fed in :func:`alert_order` (the Flink operator sorts each
    watermark's batch; :func:`gate_alerts` sorts a whole run). Memory: the limiter's
    timestamps plus the ids of the suppressed episodes still open (at most ``remember``).

    Examples
    --------
    >>> gate = GlobalAlertGate(max_per_hour=1)
    >>> a = {"kind": "open", "alert_id": "a", "entity": "x", "ts_ms": 0}
    >>> b = {"kind": "open", "alert_id": "b", "entity": "y", "ts_ms": 1}
    >>> [k for k, _ in gate.decide(a)], [r.get("check") for _, r in gate.decide(b)]
    (['alert'], ['alert_storm'])
    >>> gate.decide({"kind": "resolved", "alert_id": "b", "entity": "y", "ts_ms": 9})
    []
    >>> gate.suppressed
    2
    """

    __slots__ = ("max_per_hour", "remember", "_limiter", "_dropped", "_storm")

    def __init__(self, max_per_hour: int, remember: int = 10_000) -> None:
        self.max_per_hour = max_per_hour
        self.remember = remember
        self._limiter = GlobalRateLimiter(max_per_hour)
        self._dropped: list[str] = []  # suppressed episodes not yet resolved, oldest first
        self._storm = False

    @property
    def suppressed(self) -> int:
        """Alert records held back since the gate was created (or restored)."""
        return self._limiter.suppressed

    def decide(self, rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The records to emit for one alert record: itself (with the count), or nothing
        (and possibly an ``alert_storm`` health record)."""
        lim = self._limiter
        aid = rec["alert_id"]
        if aid in self._dropped:
            lim.count_suppressed()
            if rec["kind"] == "resolved":
                self._dropped.remove(aid)
            return []
        if rec["kind"] == "resolved":
            return [("alert", self._carry(rec))]
        pending = lim.suppressed_since_allowed
        if lim.allow(rec["ts_ms"]):
            self._storm = False
            out = dict(rec)
            if pending:
                out["suppressed_global"] = pending
            return [("alert", out)]
        if rec["kind"] == "open":
            self._dropped.append(aid)
            if len(self._dropped) > self.remember:
                del self._dropped[0]
        if self._storm:
            return []
        self._storm = True
        return [("drift", self._storm_record(rec))]

    def _carry(self, rec: dict[str, Any]) -> dict[str, Any]:
        pending = self._limiter.take_pending()
        if not pending:
            return rec
        out = dict(rec)
        out["suppressed_global"] = pending
        return out

    def _storm_record(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "health",
            "check": "alert_storm",
            "entity": "*",
            "feature": "alerts",
            "value": self.max_per_hour + 1,
            "threshold": self.max_per_hour,
            "ts": format_timestamp(rec["ts_ms"]),
            "ts_ms": rec["ts_ms"],
            "first_suppressed": rec["alert_id"],
            "detail": f"more than {self.max_per_hour} alerts in an hour of event time: "
            "the rest are held back and counted (suppressed_global on the next alert out)",
        }

    def snapshot(self) -> tuple[Any, ...]:
        return (self._limiter.snapshot(), list(self._dropped), self._storm)

    def restore(self, snap: tuple[Any, ...] | list[Any]) -> None:
        limiter, dropped, storm = snap
        self._limiter.restore(limiter)
        self._dropped = list(dropped)
        self._storm = bool(storm)


def gate_alerts(
    outputs: list[tuple[str, dict[str, Any]]], max_per_hour: int
) -> list[tuple[str, dict[str, Any]]]:
    """A whole run's outputs with the global gate applied to the alert records (replay)."""
    if max_per_hour <= 0:
        return outputs
    gate = GlobalAlertGate(max_per_hour)
    alerts = sorted((r for k, r in outputs if k == "alert"), key=alert_order)
    gated = [o for rec in alerts for o in gate.decide(rec)]
    return [o for o in outputs if o[0] != "alert"] + gated
