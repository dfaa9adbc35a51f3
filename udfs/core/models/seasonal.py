"""``seasonal``: a value unusual for the time of day, per metric.

Per metric, a trailing level (exponentially weighted mean and variance over about
``level_half_life`` events) and, on the residual from it, a profile of the day in ``slots``
slots of event time (UTC): per slot a decayed mean and variance of the residual (half life
``half_life_days`` of event time). Once the event's slot has been seen on ``min_days``
distinct days, the metric's score is the residual's distance from its slot's usual value in
slot standard deviations, ``|y - mean_k| / sd_k``; before that it is the distance from the
trailing level, ``|x - m| / sqrt(v)`` (so a new entity is scored from its first events). The
standard deviations are floored at ``floor_fraction`` of the metric's recent range (the
``extremes`` horizon). The raw score is the largest over the event's metrics.

It sees a value in the normal range at the wrong time of day (traffic at 3 am as high as at
noon), and a change of level faster than the trailing level follows.
"""

from __future__ import annotations

import math
from typing import Any

from udfs.core.config import SeasonalConfig
from udfs.core.decision import Contribution
from udfs.core.models.base import Calibration, Context
from udfs.core.models.extremes import RangeTracker

__all__ = ["SeasonalModel"]

_DAY_MS = 86_400_000
_LN2 = math.log(2.0)


class _Metric:
    """One metric: its level, its range, and its daily profile."""

    __slots__ = (
        "n", "m", "v", "range",
        "weight", "mean", "m2", "last_ms", "days",
    )

    def __init__(self, cfg: SeasonalConfig, blocks: int, block_events: int) -> None:
        self.n = 0
        self.m = 0.0
        self.v = 0.0
        self.range = RangeTracker(blocks, block_events)
        slots = cfg.slots
        self.weight = [0.0] * slots
        self.mean = [0.0] * slots
        self.m2 = [0.0] * slots
        self.last_ms = [0] * slots
        self.days = [0] * slots


class SeasonalModel:
    """Largest time-of-day surprise over the event's metrics (see the module docstring)."""

    name = "seasonal"

    __slots__ = ("cfg", "calibration", "metrics", "_slot_ms", "_alpha", "_lam", "_blocks", "_explained")

    def __init__(
        self, cfg: SeasonalConfig, calibration: Calibration, blocks: int, block_events: int
    ) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.metrics: dict[str, _Metric] = {}
        self._slot_ms = _DAY_MS // cfg.slots
        self._alpha = 1.0 - 2.0 ** (-1.0 / cfg.level_half_life)
        self._lam = _LN2 / (cfg.half_life_days * _DAY_MS)
        self._blocks = (blocks, block_events)
        self._explained: list[Contribution] = []

    def _slot(self, ts: int) -> int:
        return (ts % _DAY_MS) // self._slot_ms

    def score_one(self, ctx: Context) -> float | None:
        cfg = self.cfg
        k = self._slot(ctx.ts)
        best = 0.0
        seen = False
        self._explained = []
        for metric, x in ctx.metrics.items():
            st = self.metrics.get(metric)
            if st is None or st.n == 0:
                continue
            seen = True
            span = st.range.range()
            floor = cfg.floor_fraction * (span[1] - span[0]) if span is not None else 0.0
            floor += 1e-12
            if st.days[k] >= cfg.min_days:
                y = x - st.m
                w = st.weight[k]
                sd = math.sqrt(st.m2[k] / w) if w > 0.0 else 0.0
                z = (y - st.mean[k]) / (sd if sd > floor else floor)
                expected = st.m + st.mean[k]
                feature = f"{metric}.seasonal"
            else:
                sd = math.sqrt(st.v)
                z = (x - st.m) / (sd if sd > floor else floor)
                expected = st.m
                feature = f"{metric}.level"
            s = abs(z)
            self._explained.append(Contribution(feature, metric, x, expected, z))
            if s > best:
                best = s
        return best if seen else None

    def applies(self, ctx: Context) -> bool:
        return True

    def warm(self, ctx: Context) -> bool:
        return True

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        cfg = self.cfg
        k = self._slot(ctx.ts)
        for metric, x in ctx.metrics.items():
            st = self.metrics.get(metric)
            if st is None:
                if len(self.metrics) >= cfg.max_metrics:
                    continue
                st = self.metrics[metric] = _Metric(cfg, *self._blocks)
            self._learn(st, k, ctx.ts, x)

    def _learn(self, st: _Metric, k: int, ts: int, x: float) -> None:
        # The slot, on the residual from the level before this event (time-decayed).
        y = x - st.m
        w = st.weight[k]
        if w > 0.0:
            dt = ts - st.last_ms[k]
            if dt > self._slot_ms:
                st.days[k] += 1
            decay = math.exp(-self._lam * (dt if dt > 0 else 0))
        else:
            st.days[k] = 1
            decay = 0.0
        w = w * decay + 1.0
        d = y - st.mean[k]
        mean = st.mean[k] + d / w
        st.m2[k] = st.m2[k] * decay + d * (y - mean)
        st.mean[k] = mean
        st.weight[k] = w
        st.last_ms[k] = ts
        # The level: an exact running mean at first, then exponentially weighted.
        st.n += 1
        a = 1.0 / st.n if 1.0 / st.n > self._alpha else self._alpha
        d = x - st.m
        st.m += a * d
        st.v = (1.0 - a) * (st.v + a * d * d)
        st.range.add(x)

    def explain(self, ctx: Context) -> list[Contribution]:
        return sorted(self._explained, key=lambda c: (-abs(c.z), c.feature))

    def forget(self, metric: str) -> None:
        self.metrics.pop(metric, None)

    def snapshot(self) -> dict[str, Any]:
        return {
            name: [
                st.n, st.m, st.v, st.range.snapshot(),
                list(st.weight), list(st.mean), list(st.m2), list(st.last_ms), list(st.days),
            ]
            for name, st in sorted(self.metrics.items())
        }

    def restore(self, data: dict[str, Any]) -> None:
        for name, snap in data.items():
            st = _Metric(self.cfg, *self._blocks)
            st.n, st.m, st.v = int(snap[0]), float(snap[1]), float(snap[2])
            st.range.restore(snap[3])
            if len(snap[4]) != self.cfg.slots:
                continue  # another number of slots: the profile starts afresh
            st.weight = [float(v) for v in snap[4]]
            st.mean = [float(v) for v in snap[5]]
            st.m2 = [float(v) for v in snap[6]]
            st.last_ms = [int(v) for v in snap[7]]
            st.days = [int(v) for v in snap[8]]
            self.metrics[name] = st


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.models.seasonal":
    from udfs.core.native import bind

    bind(globals(), __file__, "models.seasonal")
