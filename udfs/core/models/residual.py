"""``residual``: how far the event is from the entity's seasonal baseline, jointly over its
metrics (one model for one metric or many).

Per metric, a **seasonal baseline**: a trailing level (exponentially weighted over
``level_half_life`` events, the exact mean at first) and, on the residual ``y = x - level``, a
profile of the day in ``slots`` slots of event time (UTC): per slot a mean and a variance,
forgetting with a half life of ``half_life_days`` days of that slot's visits, trusted once the
slot has been seen on ``min_days`` distinct days. The event's standardised residual is
``rho = (y - slot mean) / max(slot sd, floor)``.

The raw score is the **Mahalanobis distance** ``D² = zᵀ A⁻¹ z`` of that residual vector
against an online mean and covariance of it (``z`` each component's distance from the mean in
standard deviations, clipped at ``+-zcap``; ``A`` the correlation matrix shrunk by ``shrink``
toward the identity; with one metric ``D² = z²``). Until the slot is trusted the same is done
on the vector of values itself, against a second mean and covariance. A covariance averages
its first ``grow_events`` events equally, then forgets with a half life of ``half_life``
events; its Cholesky factor is refreshed after every ``refactor_every`` updates.

- **Floors**: a metric's standard deviation is at least ``floor_range`` of its running range
  plus ``floor_mean`` of its running mean's magnitude (a decaying tracker of every value), so
  a near-constant metric does not make every wiggle extreme.
- **Learn gate**: an event whose ``D²`` exceeds ``k_d`` times the running median of ``D²``
  (a decayed histogram of every scored ``D²``, half life ``gate_half_life``) is not learned by
  the covariances, so a long anomaly does not become normal; ``k_d`` is the ratio of the
  chi-square quantile at ``gate_z`` standard deviations to its median, for ``d`` degrees of
  freedom (Wilson-Hilferty: 10.8 at one metric, 2.4 at eight, 1.8 at nineteen). The median
  sees every event, so a lasting change is learned after about a gate half life.
- **Calibration**: once ``exclude_after`` consecutive events were gated, the model's scores
  stop training its calibration (a sustained fault is not learned as normal by the ranking
  either; an isolated spike is).

The model covers the first ``max_metrics`` metrics of the entity's first event, by name; a
metric missing from an event counts at its expected value (``z = 0``) and its own baseline
does not learn. State: about ``3 d² + 77 d`` floats for ``d`` metrics.
"""

from __future__ import annotations

import math
from typing import Any

from udfs.core.calibration import DecayedHistogram, linear_edges, untrim_zeros
from udfs.core.decision import Contribution
from udfs.core.model_config import ResidualConfig
from udfs.core.models.base import Calibration, Context

__all__ = ["ResidualModel", "gate_factor"]

_DAY_MS = 86_400_000
_LN2 = math.log(2.0)
# The running median of D² comes from a decayed histogram of log1p(D²) (120 bins of 0.1).
_GATE_EDGES = linear_edges(0.0, 12.0, 120)


def gate_factor(d: int, z: float) -> float:
    """The chi-square quantile at ``z`` standard deviations over its median, ``d`` degrees of
    freedom (Wilson-Hilferty).

    >>> round(gate_factor(1, 2.0), 2), round(gate_factor(19, 2.0), 2)
    (10.83, 1.81)
    """
    q = 2.0 / (9.0 * d)
    return ((1.0 - q + z * math.sqrt(q)) / (1.0 - q)) ** 3


class _Gaussian:
    """Online mean and covariance (row-major), growing then forgetting; the Cholesky factor of
    the shrunk correlation and the standard deviations it was taken with, cached."""

    __slots__ = ("d", "n", "mu", "cov", "sd", "low", "since")

    def __init__(self, d: int) -> None:
        self.d = d
        self.n = 0
        self.mu = [0.0] * d
        self.cov = [0.0] * (d * d)
        self.sd: list[float] = []
        self.low: list[float] = []
        self.since = 1 << 30

    def update(self, v: list[float], grow: int, rate: float) -> None:
        self.n += 1
        n = self.n
        w = (1.0 / n if 1.0 / n > rate else rate) if n <= grow else rate
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
        self.since += 1

    def _refactor(self, floor: list[float], shrink: float) -> None:
        d = self.d
        cov = self.cov
        sd = [0.0] * d
        for i in range(d):
            var = cov[i * d + i]
            s = math.sqrt(var) if var > 0.0 else 0.0
            sd[i] = s if s > floor[i] else floor[i]
        low = [0.0] * (d * d)
        for i in range(d):
            for j in range(i + 1):
                a = 1.0 if i == j else (1.0 - shrink) * cov[i * d + j] / (sd[i] * sd[j])
                for k in range(j):
                    a -= low[i * d + k] * low[j * d + k]
                if i == j:
                    low[i * d + i] = math.sqrt(a if a > 1e-12 else 1e-12)
                else:
                    low[i * d + j] = a / low[j * d + j]
        self.sd = sd
        self.low = low
        self.since = 0

    def distance(
        self, v: list[float], floor: list[float], zcap: float, shrink: float, every: int
    ) -> tuple[float, list[float]]:
        """``(D², z)`` of ``v``: the factor refreshed first when ``every`` updates passed."""
        if not self.low or self.since >= every:
            self._refactor(floor, shrink)
        d = self.d
        low = self.low
        sd = self.sd
        z = [0.0] * d
        y = [0.0] * d
        total = 0.0
        for i in range(d):
            zi = (v[i] - self.mu[i]) / sd[i]
            zi = zcap if zi > zcap else -zcap if zi < -zcap else zi
            z[i] = zi
            acc = zi
            row = i * d
            for k in range(i):
                acc -= low[row + k] * y[k]
            y[i] = acc / low[row + i]
            total += y[i] * y[i]
        return total, z

    def snapshot(self) -> list[Any]:
        return [self.n, list(self.mu), list(self.cov), list(self.sd), list(self.low), self.since]

    def restore(self, data: list[Any]) -> None:
        self.n = int(data[0])
        self.mu = [float(x) for x in data[1]]
        self.cov = [float(x) for x in data[2]]
        self.sd = [float(x) for x in data[3]]
        self.low = [float(x) for x in data[4]]
        self.since = int(data[5])


class ResidualModel:
    """Mahalanobis distance of the seasonal residual (see the module docstring)."""

    name = "residual"

    __slots__ = (
        "cfg", "calibration", "smoothing", "dims", "level", "level_n", "slot_mean", "slot_var",
        "slot_n", "slot_days", "slot_last", "rmu", "rlo", "rhi", "rn", "gap", "last_ts",
        "base", "res", "gate", "gate_run", "gate_k", "_rate", "_alpha", "_pending",
    )

    def __init__(self, cfg: ResidualConfig, calibration: Calibration) -> None:
        self.cfg = cfg
        self.calibration = calibration
        self.smoothing = cfg.smoothing
        self.dims: tuple[str, ...] = ()
        self.level: list[float] = []
        self.level_n = 0
        self.slot_mean: list[float] = []  # slots x d
        self.slot_var: list[float] = []
        self.slot_n: list[float] = []
        self.slot_days: list[int] = []
        self.slot_last: list[int] = []
        self.rmu: list[float] = []  # the floors' tracker: running mean, low and high
        self.rlo: list[float] = []
        self.rhi: list[float] = []
        self.rn = 0
        self.gap = 0.0  # mean gap between events (ms): slot visits from days
        self.last_ts = 0
        self.base = _Gaussian(0)
        self.res = _Gaussian(0)
        self.gate = DecayedHistogram(_GATE_EDGES, cfg.gate_half_life)
        self.gate_run = 0
        self.gate_k = 1.0
        self._rate = _LN2 / cfg.half_life
        self._alpha = 1.0 - 2.0 ** (-1.0 / cfg.level_half_life)
        # What score_one found, for learn_one and explain: (x, present, slot, y, rho or None,
        # D² or None, z, gated, whether the residual covariance scored).
        self._pending: tuple[Any, ...] | None = None

    def _start(self, metrics: dict[str, float]) -> None:
        d_all = sorted(metrics)[: self.cfg.max_metrics]
        self.dims = tuple(d_all)
        d = len(self.dims)
        slots = self.cfg.slots
        self.level = [0.0] * d
        self.slot_mean = [0.0] * (slots * d)
        self.slot_var = [0.0] * (slots * d)
        self.slot_n = [0.0] * slots
        self.slot_days = [0] * slots
        self.slot_last = [-1] * slots
        self.base = _Gaussian(d)
        self.res = _Gaussian(d)
        self.gate_k = gate_factor(d, self.cfg.gate_z)

    def applies(self, ctx: Context) -> bool:
        return True

    def ready(self, ctx: Context) -> bool:
        return True

    def learns_calibration(self, ctx: Context) -> bool:
        pending = self._pending
        return pending is None or pending[7] is None or pending[7] < self.cfg.exclude_after

    def _slot(self, ts: int) -> int:
        return int((ts % _DAY_MS) * self.cfg.slots // _DAY_MS)

    def score_one(self, ctx: Context) -> float | None:
        if not self.dims:
            self._start(ctx.metrics)
        cfg = self.cfg
        d = len(self.dims)
        present = [m in ctx.metrics for m in self.dims]
        first = self.rn == 0
        x = [ctx.metrics[m] if ok else (self.rmu[i] if not first else 0.0)
             for i, (m, ok) in enumerate(zip(self.dims, present, strict=True))]
        if first:
            floor = [1e-9] * d
        else:
            floor = [
                cfg.floor_range * (self.rhi[i] - self.rlo[i]) + cfg.floor_mean * abs(self.rmu[i]) + 1e-9
                for i in range(d)
            ]
        level = self.level if self.level_n else x
        y = [x[i] - level[i] for i in range(d)]
        k = self._slot(ctx.ts)
        slot_ready = self.slot_days[k] >= cfg.min_days
        rho: list[float] | None = None
        scale: list[float] = []
        if slot_ready:
            row = k * d
            for i in range(d):
                v = self.slot_var[row + i]
                s = math.sqrt(v) if v > 0.0 else 0.0
                scale.append(s if s > floor[i] else floor[i])
            rho = [(y[i] - self.slot_mean[row + i]) / scale[i] for i in range(d)]
        d2: float | None = None
        z: list[float] = [0.0] * d
        use_res = False
        if self.base.n >= cfg.warmup_events:
            if rho is not None and self.res.n >= cfg.warmup_events:
                use_res = True
                vec = [rho[i] if present[i] else self.res.mu[i] for i in range(d)]
                rfloor = [floor[i] / scale[i] for i in range(d)]
                d2, z = self.res.distance(vec, rfloor, cfg.zcap, cfg.shrink, cfg.refactor_every)
            else:
                vec = [x[i] if present[i] else self.base.mu[i] for i in range(d)]
                d2, z = self.base.distance(vec, floor, cfg.zcap, cfg.shrink, cfg.refactor_every)
        run: int | None = None
        gated = False
        if d2 is not None:
            # (no median before the first distance: nothing is gated then)
            if self.gate.updates:
                median = math.expm1(self.gate.quantile_upper(0.5))
                gated = d2 > self.gate_k * max(median, 1e-12)
            run = self.gate_run + 1 if gated else 0
        self._pending = (x, present, k, y, rho, d2, z, run, use_res, gated, floor)
        return d2

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        if self._pending is None:
            return
        x, present, k, y, rho, d2, z, run, use_res, gated, floor = self._pending
        cfg = self.cfg
        d = len(self.dims)
        if d2 is not None:
            self.gate_run = run if run is not None else 0
            self.gate.update(math.log1p(d2))
        if not gated:
            if rho is not None:
                self.res.update(
                    [rho[i] if present[i] else self.res.mu[i] for i in range(d)],
                    cfg.grow_events, self._rate,
                )
            self.base.update(
                [x[i] if present[i] else self.base.mu[i] for i in range(d)],
                cfg.grow_events, self._rate,
            )
        self._track(x, present, ctx.ts)
        self._learn_level_and_profile(x, present, k, y, ctx.ts)

    def _track(self, x: list[float], present: list[bool], ts: int) -> None:
        if self.rn and ts > self.last_ts:
            gap = float(ts - self.last_ts)
            self.gap = gap if self.gap == 0.0 else self.gap + 0.01 * (gap - self.gap)
        self.last_ts = ts
        if not self.rn:
            self.rmu, self.rlo, self.rhi = list(x), list(x), list(x)
            self.rn = 1
            return
        self.rn += 1
        w = 1.0 / self.rn if 1.0 / self.rn > self._rate else self._rate
        for i in range(len(x)):
            if not present[i]:
                continue
            xi = x[i]
            self.rmu[i] += w * (xi - self.rmu[i])
            lo = self.rlo[i] + w * (self.rmu[i] - self.rlo[i])
            hi = self.rhi[i] - w * (self.rhi[i] - self.rmu[i])
            self.rlo[i] = xi if xi < lo else lo
            self.rhi[i] = xi if xi > hi else hi

    def _learn_level_and_profile(
        self, x: list[float], present: list[bool], k: int, y: list[float], ts: int
    ) -> None:
        cfg = self.cfg
        d = len(self.dims)
        self.level_n += 1
        a = 1.0 / self.level_n if 1.0 / self.level_n > self._alpha else self._alpha
        if self.level_n == 1:
            self.level = list(x)
        else:
            for i in range(d):
                if present[i]:
                    self.level[i] += a * (x[i] - self.level[i])
        slot_ms = _DAY_MS / cfg.slots
        per_visit = slot_ms / self.gap if self.gap > 0.0 else slot_ms
        nmax = max(1.0, cfg.half_life_days * max(per_visit, 1e-6) / _LN2)
        day = ts // _DAY_MS
        if self.slot_last[k] != day:
            self.slot_last[k] = day
            self.slot_days[k] += 1
        self.slot_n[k] += 1.0
        n = self.slot_n[k]
        g = 1.0 / (n if n < nmax else nmax)
        row = k * d
        mean = self.slot_mean
        var = self.slot_var
        for i in range(d):
            if not present[i]:
                continue
            dv = y[i] - mean[row + i]
            mean[row + i] += g * dv
            var[row + i] += g * (dv * dv - var[row + i])

    def explain(self, ctx: Context) -> list[Contribution]:
        if self._pending is None or self._pending[5] is None:
            return []
        x, present, k, _y, rho, _d2, z, _run, use_res, _gated, _floor = self._pending
        d = len(self.dims)
        out = []
        for i, metric in enumerate(self.dims):
            if not present[i]:
                continue
            if use_res and rho is not None:
                row = k * d
                v = self.slot_var[row + i]
                scale = (x[i] - self.level[i] - self.slot_mean[row + i]) / rho[i] if rho[i] else 0.0
                usual = self.level[i] + self.slot_mean[row + i] + self.res.mu[i] * (scale or math.sqrt(max(v, 0.0)))
                feature = f"{metric}.seasonal"
            else:
                usual = self.base.mu[i]
                feature = f"{metric}.baseline"
            out.append(Contribution(feature, metric, x[i], usual, z[i]))
        return sorted(out, key=lambda c: (-abs(c.z), c.feature))

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        trim = DecayedHistogram.trim
        return {
            "dims": list(self.dims),
            "level": [list(self.level), self.level_n],
            # (the slots of the day not seen yet are zeros: left out at either end)
            "slots": [trim(self.slot_mean), trim(self.slot_var), trim(self.slot_n),
                      list(self.slot_days), list(self.slot_last)],
            "floors": [list(self.rmu), list(self.rlo), list(self.rhi), self.rn, self.gap, self.last_ts],
            "base": self.base.snapshot(),
            "res": self.res.snapshot(),
            "gate": [self.gate.snapshot(), self.gate_run],
        }

    def restore(self, data: dict[str, Any]) -> None:
        dims = tuple(data["dims"])
        if not dims:
            return
        self._start({m: 0.0 for m in dims})
        slots = data["slots"]
        slot_n = untrim_zeros(slots[2])
        if len(slot_n) != self.cfg.slots or len(dims) != len(self.dims):
            self.dims = ()
            return  # another layout of slots or metrics: the model starts afresh
        self.level = [float(v) for v in data["level"][0]]
        self.level_n = int(data["level"][1])
        self.slot_mean = [float(v) for v in untrim_zeros(slots[0])]
        self.slot_var = [float(v) for v in untrim_zeros(slots[1])]
        self.slot_n = [float(v) for v in slot_n]
        self.slot_days = [int(v) for v in slots[3]]
        self.slot_last = [int(v) for v in slots[4]]
        rmu, rlo, rhi, rn, gap, last_ts = data["floors"]
        self.rmu, self.rlo, self.rhi = list(rmu), list(rlo), list(rhi)
        self.rn, self.gap, self.last_ts = int(rn), float(gap), int(last_ts)
        self.base.restore(data["base"])
        self.res.restore(data["res"])
        self.gate.restore(data["gate"][0])
        self.gate_run = int(data["gate"][1])


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.models.residual":
    from udfs.core.native import bind

    bind(globals(), __file__, "models.residual")
