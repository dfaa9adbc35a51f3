"""``extremes``: a value beyond everything the entity has shown lately.

Per metric, the smallest and largest value over a horizon of ``blocks`` completed blocks of
``block_events`` events plus the current block (about ``blocks * block_events`` events, in
bounded memory). The raw score of an event is, over its metrics, the largest excess beyond
that range in percent of the range: ``100 * max(x - hi, lo - x, 0) / (hi - lo)``. Zero for
a value inside the range, so the score is sparse: a new extreme, in either direction,
is what it sees (the same idea as the spatial-anomaly override of Numenta's HTM detector).
"""

from __future__ import annotations

from typing import Any

from udfs.core.config import ExtremesConfig
from udfs.core.decision import Contribution
from udfs.core.models.base import Calibration, Context

__all__ = ["ExtremesModel", "RangeTracker"]


class RangeTracker:
    """Min and max of one metric over the last ``blocks`` completed blocks of ``size``
    events and the current one.

    >>> r = RangeTracker(blocks=2, size=3)
    >>> for x in [5.0, 1.0, 9.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]:
    ...     r.add(x)
    >>> r.range()  # the block of 5, 1, 9 has left the horizon
    (4.0, 4.0)
    """

    __slots__ = ("blocks", "size", "done", "lo", "hi", "count")

    def __init__(self, blocks: int, size: int) -> None:
        self.blocks = blocks
        self.size = size
        self.done: list[tuple[float, float]] = []  # completed blocks, oldest first
        self.lo = 0.0
        self.hi = 0.0
        self.count = 0  # events in the current block

    def range(self) -> tuple[float, float] | None:
        """``(lo, hi)`` over the horizon, None before any value."""
        if not self.done and not self.count:
            return None
        lo = self.lo if self.count else self.done[-1][0]
        hi = self.hi if self.count else self.done[-1][1]
        for blo, bhi in self.done:
            if blo < lo:
                lo = blo
            if bhi > hi:
                hi = bhi
        return lo, hi

    def add(self, x: float) -> None:
        if self.count == 0:
            self.lo = self.hi = x
        else:
            if x < self.lo:
                self.lo = x
            if x > self.hi:
                self.hi = x
        self.count += 1
        if self.count == self.size:
            self.done.append((self.lo, self.hi))
            if len(self.done) > self.blocks:
                del self.done[0]
            self.count = 0

    def snapshot(self) -> list[Any]:
        return [[list(b) for b in self.done], self.lo, self.hi, self.count]

    def restore(self, data: list[Any]) -> None:
        self.done = [(float(a), float(b)) for a, b in data[0]]
        self.lo, self.hi, self.count = float(data[1]), float(data[2]), int(data[3])


class ExtremesModel:
    """Largest excess beyond the entity's recent range, over its metrics (see the module
    docstring)."""

    name = "extremes"
    smoothing = 1

    __slots__ = ("cfg", "calibration", "ranges", "_best")

    def __init__(self, cfg: ExtremesConfig, calibration: Calibration) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.ranges: dict[str, RangeTracker] = {}
        self._best: tuple[str, float, float, float] | None = None  # metric, x, bound, excess

    def score_one(self, ctx: Context) -> float | None:
        best = 0.0
        self._best = None
        for metric, x in ctx.metrics.items():
            tracker = self.ranges.get(metric)
            span = None if tracker is None else tracker.range()
            if span is None:
                continue
            lo, hi = span
            width = hi - lo
            if width <= 0.0:
                continue
            excess = x - hi if x > hi else lo - x if x < lo else 0.0
            e = 100.0 * excess / width
            if e > best:
                best = e
                self._best = (metric, x, hi if x > hi else lo, (x - (hi if x > hi else lo)) / width)
        return best

    def applies(self, ctx: Context) -> bool:
        return True

    def ready(self, ctx: Context) -> bool:
        return True

    def learns_calibration(self, ctx: Context) -> bool:
        return True

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        cfg = self.cfg
        for metric, x in ctx.metrics.items():
            tracker = self.ranges.get(metric)
            if tracker is None:
                if len(self.ranges) >= cfg.max_metrics:
                    continue
                tracker = self.ranges[metric] = RangeTracker(cfg.blocks, cfg.block_events)
            tracker.add(x)

    def explain(self, ctx: Context) -> list[Contribution]:
        if self._best is None:
            return []
        metric, x, bound, z = self._best
        return [Contribution(f"{metric}.range", metric, x, bound, z)]

    def snapshot(self) -> dict[str, Any]:
        return {m: t.snapshot() for m, t in sorted(self.ranges.items())}

    def restore(self, data: dict[str, Any]) -> None:
        cfg = self.cfg
        for metric, snap in data.items():
            tracker = RangeTracker(cfg.blocks, cfg.block_events)
            tracker.restore(snap)
            self.ranges[metric] = tracker


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.models.extremes":
    from udfs.core.native import bind

    bind(globals(), __file__, "models.extremes")
