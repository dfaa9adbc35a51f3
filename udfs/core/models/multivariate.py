"""``multivariate``: how far the event's vector of metrics is from the entity's usual joint
behaviour (entities with two metrics or more).

The Mahalanobis distance ``D² = zᵀ R⁻¹ z`` of the event's metrics against an online mean and
covariance of the entity's past:

- **what is modelled**: the vector of the entity's metrics (the first ``max_metrics`` of its
  first event, by name), minus its time-of-day profile once the profile is ready (``slots``
  slots of the day with linear interpolation, learned on every event, winsorised at
  ``winsor`` standard deviations, ready once both slots of the event's time have been seen
  on ``min_days`` distinct days; before that the vector itself);
- **the baseline**: mean ``mu`` and covariance ``C``, averaged equally over the first
  ``grow_events`` events, then forgetting with a half life of ``half_life`` events;
- **the distance**: ``z = clip((v - mu) / s, +-zcap)`` with ``s`` each metric's standard
  deviation floored at ``floor_range`` of the metric's running range plus ``floor_mean``
  of its running mean; ``R`` the correlation matrix shrunk by ``shrink`` toward the identity
  (solved by a Cholesky factorisation);
- **learn-gating**: an event with ``D²`` above ``gate`` times the running median of
  ``D²`` is not learned by the baseline, so a long anomaly does not become normal; the
  median sees every event, so a lasting change is learned after about a gate half life.

State: ``d² + O(d)`` floats for each of two baselines (the vector's and the residual's),
``slots x d`` for the profile.
"""

from __future__ import annotations

import math
from typing import Any

from udfs.core.calibration import DecayedHistogram, log_edges
from udfs.core.config import MultivariateConfig
from udfs.core.decision import Contribution
from udfs.core.models.base import Calibration, Context

__all__ = ["MultivariateModel", "mahalanobis"]

_DAY_MS = 86_400_000
_LN2 = math.log(2.0)
_GATE_EDGES = log_edges(1e-3, 1e5, 80)


def mahalanobis(z: list[float], corr: list[float], d: int, shrink: float) -> float:
    """``zᵀ R⁻¹ z`` with ``R = (1 - shrink) corr + shrink I`` (``corr``: d x d, row-major,
    unit diagonal), by a Cholesky factorisation; a pivot that is not positive (a singular
    correlation) counts as 1.

    >>> round(mahalanobis([1.0, 1.0], [1.0, 0.5, 0.5, 1.0], 2, 0.0), 6)  # 2 / (1 + 0.5)
    1.333333
    """
    low = [0.0] * (d * d)
    for i in range(d):
        for j in range(i + 1):
            r = corr[i * d + j] * (1.0 - shrink) + (shrink if i == j else 0.0)
            acc = r
            for k in range(j):
                acc -= low[i * d + k] * low[j * d + k]
            if i == j:
                low[i * d + i] = math.sqrt(acc) if acc > 1e-12 else 1.0
            else:
                low[i * d + j] = acc / low[j * d + j]
    total = 0.0
    y = [0.0] * d
    for i in range(d):
        acc = z[i]
        for k in range(i):
            acc -= low[i * d + k] * y[k]
        y[i] = acc / low[i * d + i]
        total += y[i] * y[i]
    return total


class _Gaussian:
    """Online mean and covariance (full, row-major), growing then forgetting."""

    __slots__ = ("d", "n", "mu", "cov")

    def __init__(self, d: int) -> None:
        self.d = d
        self.n = 0
        self.mu = [0.0] * d
        self.cov = [0.0] * (d * d)

    def update(self, v: list[float], grow: int, rate: float) -> None:
        self.n += 1
        n = self.n
        w = 1.0 / n if n <= grow and 1.0 / n > rate else rate
        d = self.d
        dx = [v[i] - self.mu[i] for i in range(d)]
        for i in range(d):
            self.mu[i] += w * dx[i]
        keep = 1.0 - w
        cov = self.cov
        for i in range(d):
            wi = w * dx[i]
            row = i * d
            for j in range(d):
                cov[row + j] = keep * (cov[row + j] + wi * dx[j])

    def distance(
        self, v: list[float], floor: list[float], zcap: float, shrink: float
    ) -> tuple[float, list[float], list[float]]:
        """``(D², z, s)`` of ``v`` against this baseline."""
        d = self.d
        cov = self.cov
        s = [0.0] * d
        for i in range(d):
            var = cov[i * d + i]
            sd = math.sqrt(var) if var > 0.0 else 0.0
            s[i] = sd if sd > floor[i] else floor[i]
        corr = [0.0] * (d * d)
        for i in range(d):
            for j in range(d):
                corr[i * d + j] = 1.0 if i == j else cov[i * d + j] / (s[i] * s[j])
        z = [0.0] * d
        for i in range(d):
            zi = (v[i] - self.mu[i]) / s[i]
            z[i] = zcap if zi > zcap else -zcap if zi < -zcap else zi
        return mahalanobis(z, corr, d, shrink), z, s

    def snapshot(self) -> list[Any]:
        return [self.n, list(self.mu), list(self.cov)]

    def restore(self, data: list[Any]) -> None:
        self.n = int(data[0])
        self.mu = [float(x) for x in data[1]]
        self.cov = [float(x) for x in data[2]]


class MultivariateModel:
    """Mahalanobis distance of the metric vector, or of its time-of-day residual (see the
    module docstring)."""

    name = "multivariate"

    __slots__ = (
        "cfg", "calibration", "dims", "base", "res", "profile", "visits", "days", "last_day",
        "rmu", "rlo", "rhi", "rn", "gap", "last_ts", "gate", "_rate", "_scored",
    )

    def __init__(self, cfg: MultivariateConfig, calibration: Calibration) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.dims: tuple[str, ...] = ()
        self.base = _Gaussian(0)
        self.res = _Gaussian(0)
        self.profile: list[float] = []  # slots x d
        self.visits: list[float] = []
        self.days: list[int] = []
        self.last_day: list[int] = []
        self.rmu: list[float] = []  # running mean, low and high of each metric
        self.rlo: list[float] = []
        self.rhi: list[float] = []
        self.rn = 0
        self.gap = 0.0  # mean gap between events, ms
        self.last_ts = 0
        self.gate = DecayedHistogram(_GATE_EDGES, cfg.gate_half_life)
        self._rate = _LN2 / cfg.half_life
        # (what score_one found, for learn_one and explain)
        self._scored: tuple[list[float], list[float], float, list[float], list[float], bool] | None = None

    def _start(self, metrics: dict[str, float]) -> None:
        self.dims = tuple(sorted(metrics))[: self.cfg.max_metrics]
        d = len(self.dims)
        slots = self.cfg.slots
        self.base = _Gaussian(d)
        self.res = _Gaussian(d)
        self.profile = [0.0] * (slots * d)
        self.visits = [0.0] * slots
        self.days = [0] * slots
        self.last_day = [-1] * slots

    def applies(self, ctx: Context) -> bool:
        return len(self.dims or ctx.metrics) >= 2

    def warm(self, ctx: Context) -> bool:
        return True

    def _slots(self, ts: int) -> tuple[int, float, int, float]:
        slots = self.cfg.slots
        f = (ts % _DAY_MS) / _DAY_MS * slots - 0.5
        i0 = math.floor(f)
        a = f - i0
        return i0 % slots, 1.0 - a, (i0 + 1) % slots, a

    def _expected(self, ts: int) -> list[float]:
        i0, a0, i1, a1 = self._slots(ts)
        d = len(self.dims)
        p = self.profile
        return [a0 * p[i0 * d + j] + a1 * p[i1 * d + j] for j in range(d)]

    def _profile_ready(self, ts: int) -> bool:
        i0, _, i1, _ = self._slots(ts)
        need = self.cfg.min_days
        return self.days[i0] >= need and self.days[i1] >= need

    def score_one(self, ctx: Context) -> float | None:
        if not self.dims:
            if len(ctx.metrics) < 2:
                return None
            self._start(ctx.metrics)
        cfg = self.cfg
        d = len(self.dims)
        if d < 2:
            return None
        x = [ctx.metrics.get(m, math.nan) for m in self.dims]
        if self.rn:
            # A metric missing from the event counts at its usual value.
            x = [v if v == v else self.rmu[i] for i, v in enumerate(x)]
        else:
            x = [v if v == v else 0.0 for v in x]
        expected = self._expected(ctx.ts)
        use_profile = self._profile_ready(ctx.ts) and self.res.n >= cfg.warmup_events
        if self.rn:
            floor = [
                cfg.floor_range * (self.rhi[i] - self.rlo[i]) + cfg.floor_mean * abs(self.rmu[i]) + 1e-9
                for i in range(d)
            ]
        else:
            floor = [1e-9] * d
        d2 = 0.0
        z: list[float] = [0.0] * d
        scored = False
        if use_profile:
            v = [x[i] - expected[i] for i in range(d)]
            d2, z, _ = self.res.distance(v, floor, cfg.zcap, cfg.shrink)
            scored = True
        elif self.base.n >= cfg.warmup_events:
            d2, z, _ = self.base.distance(x, floor, cfg.zcap, cfg.shrink)
            scored = True
        self._scored = (x, expected, d2, z, floor, scored)
        return d2 if scored else None

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        if not self.dims or self._scored is None:
            return
        cfg = self.cfg
        x, expected, d2, z, floor, scored = self._scored
        d = len(self.dims)
        gated = scored and d2 > cfg.gate * max(self.gate.quantile_upper(0.5), 1e-12)
        if scored:
            self.gate.update(d2)
        if not gated:
            if self._profile_ready(ctx.ts):
                self.res.update([x[i] - expected[i] for i in range(d)], cfg.grow_events, self._rate)
            self.base.update(x, cfg.grow_events, self._rate)
        self._track(x, ctx.ts)
        # The profile learns every event, winsorised once the residual model scores.
        xs = x
        if self._profile_ready(ctx.ts) and self.res.n >= cfg.warmup_events:
            lim = [cfg.winsor * max(math.sqrt(max(self.res.cov[i * d + i], 0.0)), floor[i]) for i in range(d)]
            xs = [
                expected[i] + max(-lim[i], min(lim[i], x[i] - expected[i])) for i in range(d)
            ]
        self._learn_profile(xs, ctx.ts)

    def _track(self, x: list[float], ts: int) -> None:
        if self.rn and ts > self.last_ts:
            gap = float(ts - self.last_ts)
            self.gap = gap if self.gap == 0.0 else self.gap + 0.01 * (gap - self.gap)
        self.last_ts = ts
        d = len(self.dims)
        if not self.rn:
            self.rmu, self.rlo, self.rhi = list(x), list(x), list(x)
            self.rn = 1
            return
        self.rn += 1
        w = 1.0 / self.rn if 1.0 / self.rn > self._rate else self._rate
        for i in range(d):
            self.rmu[i] += w * (x[i] - self.rmu[i])
            lo = self.rlo[i] + w * (self.rmu[i] - self.rlo[i])
            hi = self.rhi[i] - w * (self.rhi[i] - self.rmu[i])
            self.rlo[i] = x[i] if x[i] < lo else lo
            self.rhi[i] = x[i] if x[i] > hi else hi

    def _learn_profile(self, xs: list[float], ts: int) -> None:
        cfg = self.cfg
        d = len(self.dims)
        slot_ms = _DAY_MS / cfg.slots
        per_visit = slot_ms / self.gap if self.gap > 0.0 else 1.0
        nmax = max(1.0, cfg.half_life_days * max(per_visit, 1e-6) / _LN2)
        day = ts // _DAY_MS
        i0, a0, i1, a1 = self._slots(ts)
        for i, a in ((i0, a0), (i1, a1)):
            if a <= 0.0:
                continue
            if self.last_day[i] != day:
                self.last_day[i] = day
                self.days[i] += 1
            self.visits[i] += a
            n = self.visits[i] if self.visits[i] < nmax else nmax
            row = i * d
            p = self.profile
            for j in range(d):
                p[row + j] += a / n * (xs[j] - p[row + j])

    def explain(self, ctx: Context) -> list[Contribution]:
        if self._scored is None or not self._scored[5]:
            return []
        x, expected, _d2, z, _floor, _ = self._scored
        use_profile = self._profile_ready(ctx.ts) and self.res.n >= self.cfg.warmup_events
        base = self.res if use_profile else self.base
        out = []
        for i, metric in enumerate(self.dims):
            usual = base.mu[i] + (expected[i] if use_profile else 0.0)
            out.append(Contribution(f"{metric}.joint", metric, x[i], usual, z[i]))
        return sorted(out, key=lambda c: (-abs(c.z), c.feature))

    def snapshot(self) -> dict[str, Any]:
        return {
            "dims": list(self.dims),
            "base": self.base.snapshot(),
            "res": self.res.snapshot(),
            "profile": list(self.profile),
            "visits": list(self.visits),
            "days": list(self.days),
            "last_day": list(self.last_day),
            "range": [list(self.rmu), list(self.rlo), list(self.rhi), self.rn],
            "gap": self.gap,
            "last_ts": self.last_ts,
            "gate": self.gate.snapshot(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        dims = tuple(data["dims"])
        if not dims:
            return
        self._start({m: 0.0 for m in dims})
        if len(data["visits"]) != self.cfg.slots or len(dims) != len(self.dims):
            return  # another profile or metric layout: the model starts afresh
        self.base.restore(data["base"])
        self.res.restore(data["res"])
        self.profile = [float(v) for v in data["profile"]]
        self.visits = [float(v) for v in data["visits"]]
        self.days = [int(v) for v in data["days"]]
        self.last_day = [int(v) for v in data["last_day"]]
        rmu, rlo, rhi, rn = data["range"]
        self.rmu, self.rlo, self.rhi = list(rmu), list(rlo), list(rhi)
        self.rn = int(rn)
        self.gap = float(data["gap"])
        self.last_ts = int(data["last_ts"])
        self.gate.restore(data["gate"])


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.models.multivariate":
    from udfs.core.native import bind

    bind(globals(), __file__, "models.multivariate")
