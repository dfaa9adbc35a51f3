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

__all__ = ["HOUR_MS", "GlobalRateLimiter"]

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
