"""Per-entity drift detection and detector health signals, in bounded memory.

The costliest failure of an adaptive detector is silence: its baselines and its threshold
follow a shifted distribution, and it stops alerting while the incident goes on. One
:class:`DriftMonitor` per entity watches the entity's raw metric values and its anomaly
score, compares a frozen *reference* with a sliding *current* window, and says when they
differ (``drift`` records) and when the detector looks blind (``health`` records).

Reference and current window, per series
----------------------------------------
Each series (a metric name, or :data:`SCORE`) counts its own values; a missing or
non-finite value is skipped. After ``warmup_events`` values, the series builds its reference
from the next ``reference_events`` values ``R``, in two halves:

1. the first ``R / 2`` values yield the *reference sample*: ``ks_samples`` (``K``) values, one
   per block of ``R / (2 K)`` consecutive values (the position inside each block is a
   deterministic hash of the block number, so a periodic series is not aliased). When the
   half is complete, the sample is sorted and frozen, and its ``psi_bins`` quantiles
   (deciles by default, numpy's default "linear" method) become the fixed PSI bin edges;
2. the next ``R / 2`` values are counted in those bins: the reference bin counts.

The reference is then frozen until :meth:`DriftMonitor.reset_reference` (an operator
command), ``refresh_events`` (an automatic rebuild) or a drift with ``action="reset"``.
Edges from one half and counts from the other make PSI a genuine two-sample comparison: an
edge that is off by sampling error only makes its bins unequal, it does not bias the index.

The current window is the last ``window_events`` values ``W``, a true sliding window kept in
bounded memory: a ring of ``W / check_every`` sub-windows of bin counts (plus their running
sum), and a ring of ``K`` values, one per block of ``W / K`` consecutive values (hashed
position again). Every ``check_every`` values, when the sub-windows are aligned, the ring
holds exactly the last ``W`` values and the statistics are computed:

- **PSI**, :func:`psi`: ``sum((a - e) * ln(a / e))`` over the bins, ``e`` and ``a`` the
  reference and current shares, each floored at :data:`PSI_EPSILON` (``1e-4``) so that an
  empty bin costs a large but finite amount instead of an infinite one;
- **KS**, :func:`ks_statistic`: the two-sample Kolmogorov-Smirnov statistic ``D`` (not a
  p-value: both sample sizes are fixed by the configuration, so a threshold on ``D`` is a
  fixed significance level) between the reference sample and the current sample; equal to
  ``scipy.stats.ks_2samp(...).statistic``.

Samples are kept as float32 (the statistics use the rounded values; values beyond
``+-3e38`` are clamped). Bin ``i`` holds the values ``x`` with ``i`` edges ``<= x``
(``bisect_right``), so values outside the reference range count in the end bins.

Score drift
-----------
The :data:`SCORE` series gets the same two comparisons plus Page-Hinkley on every score
value: :class:`PageHinkley` is River 0.23's ``drift.PageHinkley`` step for step (tested
against it value by value), in plain Python so that the workers never import numpy; its
handful of attributes are snapshotted as plain data. Page-Hinkley's default ``alpha`` (forgetting
factor) makes its cumulative sum an AR(1) process that keeps crossing any threshold on a
stationary stream, so the default here is ``alpha=1`` (the classic test); ``delta=0.05`` and
``threshold=20`` suit a calibrated score (about uniform on [0, 1], sd 0.29): a shift of the
mean score by 0.1 is found after about 300 events (730 at most on 30 seeds), by 0.2 after
about 120.

Records
-------
A drift record is emitted once when a statistic crosses its threshold
(``value > threshold``), and again only after it has *cleared* (a later check below
``clear_ratio * threshold``) or after the reference was rebuilt::

    {"type": "drift", "feature": "cpu", "statistic": "psi" | "ks" | "page_hinkley",
     "value": 0.51, "threshold": 0.2, "action": "report" | "reset",
     "reference": {"from_ts": ..., "to_ts": ..., "events": ...},
     "current": {"from_ts": ..., "to_ts": ..., "events": ...}}

For PSI and KS the spans are the reference period and the current window. Page-Hinkley has
no windows: its reference is its run since its last reset up to the estimated change point
(the event at which its cumulative sum reached its extreme), its current span is from that
change point to the detection. Page-Hinkley restarts after each detection (River's
behaviour); a detection within ``window_events`` score values of the previous one is the
same drift and is not re-emitted.

Health records (``{"type": "health", "check": ..., "feature": "score", "value": ...,
"threshold": ..., ...}``):

``silent_detector``
    The score is in drift (a PSI or KS drift of the score that has not cleared, or a
    Page-Hinkley detection within the last ``window_events`` score values) and the detector
    has raised no alert for ``silent_after_events`` events (updates) while events flow. The
    count runs from the last alert, not from the drift: a detector that stopped alerting
    before the drift became visible is reported as soon as the drift is seen. Emitted once
    per alert-free stretch; the next alert re-arms it. Extra fields: ``events_since_alert``,
    ``last_alert_ts`` (``None`` if no alert since the monitor started), ``score_drift_ts``
    (onset of the latest score drift) and ``current`` (the silent stretch).
``stale_model``
    The score has stopped moving: the interquartile range of the current window's score
    sample is below ``stale_spread`` (a calibrated score is about uniform on [0, 1],
    IQR 0.5; a model that returns a constant, or is stuck before readiness, gives 0).
    Checked with the other score statistics; emitted once, again after it has cleared.

With ``action="reset"``, the monitor rebuilds its own reference right after emitting a
drift record: the caller is expected to reset the entity's models too, after which the old
reference no longer describes anything.

Limits
------
The reference halves and the window must each span the series' seasonal period: a season
longer than ``window_events`` values *is* a change between reference and window, and is
reported as drift again and again. Size the windows in events accordingly (or rely on
``refresh_events``). A score drift lasts only while the entity's calibration has not
absorbed the new pattern: once scores are uniform again they match the reference, the
score drift clears and ``silent_detector`` stops; the metric drift, on raw values, stays.

State and cost
--------------
Per series: the reference sample and the current sample (``K`` float32 each), the edges,
the reference counts, the sub-window ring (``W / check_every`` x ``psi_bins`` counts, one
byte each when ``check_every < 256``) and its start timestamps, a few integers; plus about
fifteen numbers for Page-Hinkley and the health checks. Nothing grows with the number of
events. An update is a bisection and a few integer operations per series (plus
Page-Hinkley on the score); PSI and KS cost ``O(psi_bins * W / check_every + K log K)`` once
per ``check_every`` values.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from udfs.core.checks import glob_problem
from udfs.core.packing import from_le_bytes, le_bytes

__all__ = [
    "PSI_EPSILON",
    "SCORE",
    "DriftConfig",
    "DriftMonitor",
    "ks_statistic",
    "psi",
    "quantiles",
]

#: Name of the anomaly-score series.
SCORE = "score"
#: Floor of a bin share in :func:`psi` (an empty bin would make the index infinite).
PSI_EPSILON = 1e-4

_SNAPSHOT_VERSION = 1
_FLOAT32_MAX = 3.0e38
_ACTIONS = ("report", "reset")
_PSI = 1
_KS = 2
_STALE = 4



def _check(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class DriftConfig:
    """Configuration of :class:`DriftMonitor` (see the module docstring for the semantics).

    Parameters
    ----------
    enabled
        When false, :meth:`DriftMonitor.update` does nothing and returns ``[]``.
    watch_metrics
        Also watch each raw metric value (PSI and KS), not only the anomaly score. Off by
        default: a metric with a daily cycle compared over a window shorter than a day drifts
        every day by construction, so the records say nothing the models do not already
        follow; the score is what tells whether the detector still fits the entity.
    warmup_events
        Values of a series ignored before its reference starts (2000: an entity's young
        phase, ``detector.threshold.min_events``, while its calibration is still settling
        and its score distribution moves for that reason alone).
    reference_events
        Values of a series that build its reference (half for the sample and the bin edges,
        half for the reference bin counts); a multiple of ``2 * ks_samples``.
    refresh_events
        ``0``: the reference is rebuilt only on demand. Otherwise every ``refresh_events``
        updates the monitor rebuilds it (no check until it is complete again, so at least
        ``warmup_events + reference_events + window_events``).
    window_events
        Length of the sliding current window, in values of the series; a multiple of
        ``check_every`` and of ``ks_samples``.
    check_every
        PSI and KS are computed every ``check_every`` values of a series (at most 65535, a
        multiple of ``window_events / ks_samples``).
    psi_bins
        Number of PSI bins, cut at the reference sample's quantiles ``k / psi_bins``.
    psi_threshold
        A PSI above this is a drift (0.1 - 0.25 is the usual "moderate" band).
    ks_threshold
        A two-sample KS statistic ``D`` above this is a drift.
    ks_samples
        Values kept on each side for KS (``K``), at least ``psi_bins``.
    page_hinkley_min_instances, page_hinkley_delta, page_hinkley_threshold, page_hinkley_alpha
        River's ``PageHinkley(min_instances, delta, threshold, alpha, mode="both")`` on the
        score.
    page_hinkley_direction
        ``"up"`` (default): only a rise of the score is a drift record (more events look
        unusual than before: a new regime, or models that no longer fit); a fall is the
        models fitting better, and an entity's score falls for days while it learns its
        daily cycle. ``"both"``: either.
    clear_ratio
        A statistic in drift has cleared when a check finds it below
        ``clear_ratio * threshold``; only then can it be reported again.
    action
        ``"report"``, or ``"reset"``: drift records ask the caller to reset the entity's
        models, and the monitor rebuilds its reference.
    silent_after_events
        Events without an alert, after a score drift, that make a ``silent_detector``.
    stale_spread
        A current-window score IQR below this makes a ``stale_model`` (``0`` disables it).
    reset_epoch, reset_entities
        The operator command to refresh references: raising ``reset_epoch`` (a live change,
        see ``udfs/core/live.py``) makes every entity matching the glob ``reset_entities``
        rebuild its reference once, on its next event, with a ``drift_reference_reset``
        record. Entities created under an epoch start with it.

    Raises
    ------
    ValueError
        Naming every invalid field and its value, all at once.

    Examples
    --------
    >>> DriftConfig(window_events=1000, check_every=300)
    Traceback (most recent call last):
    ...
    ValueError: window_events=1000 must be a multiple of check_every=300; window_events=1000 must be a multiple of ks_samples=128
    """

    enabled: bool = True
    watch_metrics: bool = False
    warmup_events: int = 2_000
    reference_events: int = 2048
    refresh_events: int = 0
    window_events: int = 1024
    check_every: int = 128
    psi_bins: int = 10
    psi_threshold: float = 0.2
    ks_threshold: float = 0.35
    ks_samples: int = 128
    page_hinkley_min_instances: int = 30
    page_hinkley_delta: float = 0.05
    page_hinkley_threshold: float = 20.0
    page_hinkley_alpha: float = 1.0
    page_hinkley_direction: str = "up"
    clear_ratio: float = 0.5
    action: str = "report"
    silent_after_events: int = 1000
    stale_spread: float = 0.01
    reset_epoch: int = 0
    reset_entities: str = "*"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.enabled, bool):
            problems.append(f"enabled must be a bool, got {self.enabled!r}")
        if self.page_hinkley_direction not in ("up", "both"):
            problems.append(
                f"page_hinkley_direction must be up or both, got {self.page_hinkley_direction!r}"
            )
        if not isinstance(self.watch_metrics, bool):
            problems.append(f"watch_metrics must be a bool, got {self.watch_metrics!r}")
        ints = {
            "warmup_events": (self.warmup_events, 0),
            "reference_events": (self.reference_events, 1),
            "refresh_events": (self.refresh_events, 0),
            "window_events": (self.window_events, 1),
            "check_every": (self.check_every, 1),
            "psi_bins": (self.psi_bins, 2),
            "ks_samples": (self.ks_samples, 1),
            "page_hinkley_min_instances": (self.page_hinkley_min_instances, 1),
            "silent_after_events": (self.silent_after_events, 1),
        }
        sizes_ok = True
        for name, (count, low) in ints.items():
            if not _is_int(count) or count < low:
                problems.append(f"{name} must be an int >= {low}, got {count!r}")
                sizes_ok = sizes_ok and name in (
                    "page_hinkley_min_instances",
                    "silent_after_events",
                )
        positive = {
            "psi_threshold": self.psi_threshold,
            "page_hinkley_threshold": self.page_hinkley_threshold,
        }
        for name, value in positive.items():
            if not _is_number(value) or not value > 0:
                problems.append(f"{name} must be > 0, got {value!r}")
        in_unit = {
            "ks_threshold": self.ks_threshold,
            "page_hinkley_alpha": self.page_hinkley_alpha,
            "clear_ratio": self.clear_ratio,
        }
        for name, value in in_unit.items():
            if not _is_number(value) or not 0 < value <= 1:
                problems.append(f"{name} must be in (0, 1], got {value!r}")
        for name, value in (
            ("page_hinkley_delta", self.page_hinkley_delta),
            ("stale_spread", self.stale_spread),
        ):
            if not _is_number(value) or not value >= 0:
                problems.append(f"{name} must be >= 0, got {value!r}")
        if self.action not in _ACTIONS:
            problems.append(f"action must be one of {', '.join(_ACTIONS)}; got {self.action!r}")
        glob = glob_problem("reset_entities", self.reset_entities)
        if glob:
            problems.append(glob)
        if sizes_ok:  # how the window sizes fit together, when they are sizes at all
            self._check_layout(problems)
        _check(problems)

    def _check_layout(self, problems: list[str]) -> None:
        ref, win, ce, k = (
            self.reference_events,
            self.window_events,
            self.check_every,
            self.ks_samples,
        )
        if ref % (2 * k):
            problems.append(f"reference_events={ref} must be a multiple of 2 * ks_samples={2 * k}")
        if win % ce:
            problems.append(f"window_events={win} must be a multiple of check_every={ce}")
        if win % k:
            problems.append(f"window_events={win} must be a multiple of ks_samples={k}")
        elif ce % (win // k):
            problems.append(
                f"check_every={ce} must be a multiple of window_events / ks_samples={win // k}"
            )
        if ce > 65535:
            problems.append(f"check_every must be <= 65535, got {ce}")
        if k < self.psi_bins:
            problems.append(f"ks_samples={k} must be >= psi_bins={self.psi_bins}")
        least = self.warmup_events + ref + win
        if self.refresh_events and self.refresh_events < least:
            problems.append(
                f"refresh_events={self.refresh_events} must be 0 or >= warmup_events + "
                f"reference_events + window_events = {least}"
            )


# -- statistics ------------------------------------------------------------------------------


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population Stability Index between two histograms over the same bins.

    ``sum((a - e) * ln(a / e))`` with ``e`` and ``a`` the shares of each bin, each floored at
    :data:`PSI_EPSILON`.

    Examples
    --------
    >>> round(psi([25, 25, 25, 25], [10, 20, 30, 40]), 6)
    0.228217
    >>> psi([1, 1], [1, 1])
    0.0
    """
    ne = sum(expected)
    na = sum(actual)
    eps = PSI_EPSILON
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = e / ne
        pa = a / na
        if pe < eps:
            pe = eps
        if pa < eps:
            pa = eps
        total += (pa - pe) * math.log(pa / pe)
    return total


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``max |F_a - F_b|`` of two *sorted* samples.

    The empirical CDFs are compared just after every point of either sample, in integers:
    the result is ``h / lcm(len(a), len(b))`` correctly rounded, which is what
    ``scipy.stats.ks_2samp(a, b).statistic`` returns (its exact mode). Pure Python (a
    merge): the Flink workers' embedded interpreter must not import numpy on the hot path
    (PEMJA deadlocked finalising one operator's interpreter while another imported it).

    Examples
    --------
    >>> ks_statistic([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    0.5
    """
    n = len(a)
    m = len(b)
    lcm = n // math.gcd(n, m) * m
    sa = lcm // n
    sb = lcm // m
    i = j = 0
    best = 0
    while i < n and j < m:
        x = a[i] if a[i] <= b[j] else b[j]
        while i < n and a[i] <= x:
            i += 1
        while j < m and b[j] <= x:
            j += 1
        d = i * sa - j * sb
        if d < 0:
            d = -d
        if d > best:
            best = d
    # Past the end of one sample the other's CDF only rises towards 1: the gap shrinks.
    return best / lcm


class _Mean:
    """River's ``stats.Mean`` arithmetic (same float operations, so the same values)."""

    __slots__ = ("n", "_mean")

    def __init__(self) -> None:
        self.n = 0.0
        self._mean = 0.0

    def update(self, x: float) -> None:
        self.n += 1.0
        self._mean += (1.0 / self.n) * (x - self._mean)

    def get(self) -> float:
        return self._mean


class PageHinkley:
    """River 0.23's ``drift.PageHinkley(mode="both")``, step for step, in plain Python.

    The same attributes and the same float operations as River's class (a test compares the
    two on random streams), without importing River, and so numpy, into the Flink workers.
    """

    __slots__ = (
        "min_instances", "delta", "threshold", "alpha", "_x_mean", "_sum_increase",
        "_sum_decrease", "_min_increase", "_max_decrease", "_drift_detected",
    )

    def __init__(self, min_instances: int, delta: float, threshold: float, alpha: float) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self._reset()

    def _reset(self) -> None:
        self._drift_detected = False
        self._x_mean = _Mean()
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = float("inf")
        self._max_decrease: float = -1

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> None:
        if self._drift_detected:
            self._reset()
        self._x_mean.update(x)
        dev = x - self._x_mean.get()
        self._sum_increase = self.alpha * self._sum_increase + dev - self.delta
        self._sum_decrease = self.alpha * self._sum_decrease + dev + self.delta
        if self._sum_increase < self._min_increase:
            self._min_increase = self._sum_increase
        if self._sum_decrease > self._max_decrease:
            self._max_decrease = self._sum_decrease
        if self._x_mean.n >= self.min_instances:
            up = self._sum_increase - self._min_increase
            down = self._max_decrease - self._sum_decrease
            self._drift_detected = up > self.threshold or down > self.threshold


def quantiles(sorted_values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Quantiles of a sorted sample, bit for bit numpy's default (``method="linear"``).

    Examples
    --------
    >>> quantiles([1.0, 2.0, 3.0, 4.0], [0.25, 0.5])
    [1.75, 2.5]
    """
    n = len(sorted_values)
    out = []
    for q in qs:
        # numpy: virtual index n*q + (alpha + q*(1 - alpha - beta)) - 1 with alpha = beta = 1
        v = n * q + (1.0 + q * -1.0) - 1.0
        lo = math.floor(v)
        t = v - lo
        lo = min(max(lo, 0), n - 1)
        hi = min(lo + 1, n - 1)
        a = sorted_values[lo]
        b = sorted_values[hi]
        d = b - a
        out.append(b - d * (1.0 - t) if t >= 0.5 else a + d * t)
    return out


def _sample_offset(block: int, stride: int) -> int:
    """Position in ``[0, stride)`` of the value sampled from a block (multiplicative hash)."""
    return (((block * 2654435761) & 0xFFFFFFFF) * stride) >> 32


def _next_sample(k: int, stride: int) -> int:
    """Index of the first sampled value at or after index ``k``."""
    block = k // stride
    at = block * stride + _sample_offset(block, stride)
    if at < k:
        block += 1
        at = block * stride + _sample_offset(block, stride)
    return at


def _clamp32(x: float) -> float:
    if x > _FLOAT32_MAX:
        return _FLOAT32_MAX
    if x < -_FLOAT32_MAX:
        return -_FLOAT32_MAX
    return x


def _span(from_ts: int, to_ts: int, events: int) -> dict[str, int]:
    return {"from_ts": from_ts, "to_ts": to_ts, "events": events}


# -- state -----------------------------------------------------------------------------------


class _Series:
    """State of one series; ``n`` counts its finite values since the reference was reset."""

    __slots__ = (
        "name",
        "n",
        "ref_from_ts",
        "ref_to_ts",
        "building",
        "sample",
        "edges",
        "ref_counts",
        "ring",
        "ring_ts",
        "sums",
        "cur_sample",
        "flags",
        "next_sample",
        "base",
    )

    name: str
    n: int
    ref_from_ts: int
    ref_to_ts: int
    building: array[float]  # the reference sample while it grows
    sample: bytes  # the frozen, sorted reference sample (little-endian float32)
    edges: tuple[float, ...]
    ref_counts: list[int]
    ring: array[int]  # sub-window bin counts, flat: slot * psi_bins + bin
    ring_ts: list[int]  # first timestamp of each sub-window
    sums: list[int]  # bin counts of the whole ring
    cur_sample: array[float]  # current KS sample, slot = block % ks_samples
    flags: int  # _PSI | _KS | _STALE: in drift (or stale), not re-emitted until cleared
    next_sample: int  # derived from n: index of the next sampled value
    base: int  # derived from n: offset of the open sub-window in ring


def _blank_series(name: str, ref_stride: int) -> _Series:
    s = _Series()
    s.name = name
    s.n = 0
    s.ref_from_ts = 0
    s.ref_to_ts = 0
    s.building = array("f")
    s.sample = b""
    s.edges = ()
    s.ref_counts = []
    s.ring = array("B")
    s.ring_ts = []
    s.sums = []
    s.cur_sample = array("f")
    s.flags = 0
    s.next_sample = _sample_offset(0, ref_stride)
    s.base = 0
    return s


class DriftMonitor:
    """Drift and health monitor of one entity. See the module docstring.

    Parameters
    ----------
    cfg
        The configuration.
    series
        Names of the series to watch: the entity's metric names, and :data:`SCORE` for the
        anomaly score (the only series with Page-Hinkley and the health checks). Fixed for
        the monitor's life; values of other names are ignored.

    Examples
    --------
    >>> cfg = DriftConfig(warmup_events=0, reference_events=200, window_events=100,
    ...                   check_every=20, ks_samples=50)
    >>> mon = DriftMonitor(cfg, ["cpu"])
    >>> records = []
    >>> for i in range(600):  # one event per second; +0.5 from t = 400 s
    ...     x = (i * 7919 % 1000) / 1000.0 + (0.5 if i >= 400 else 0.0)
    ...     records += mon.update(1_000 * i, {"cpu": x}, alerted=False)
    >>> for r in records:
    ...     print(r["statistic"], round(r["value"], 4), r["current"])
    psi 0.3051 {'from_ts': 340000, 'to_ts': 439000, 'events': 100}
    ks 0.36 {'from_ts': 360000, 'to_ts': 459000, 'events': 100}
    >>> records[0]["reference"], records[0]["action"]
    ({'from_ts': 0, 'to_ts': 199000, 'events': 200}, 'report')
    """

    __slots__ = (
        "cfg",
        "_series",
        "_score",
        "_ph",
        "_ph_state",
        "_since_refresh",
        "_since_alert",
        "_start_ts",
        "_last_alert_ts",
        "_score_drift_ts",
        "_silent_sent",
        "_b1",
        "_b2",
        "_b3",
        "_ref_stride",
        "_cur_stride",
        "_nsub",
        "_typecode",
        "_layout",
    )

    def __init__(self, cfg: DriftConfig, series: Sequence[str]) -> None:
        self.cfg = cfg
        self._derive()
        self._series = [_blank_series(name, self._ref_stride) for name in sorted(set(series))]
        self._score = self._find(SCORE)
        self._ph = self._new_ph()
        # Page-Hinkley bookkeeping: [updates since reset, updates at the last detection (-1:
        # none), run start ts, ts and n of the increase change point, same for decrease].
        self._ph_state = [0, -1, 0, 0, 0, 0, 0]
        self._since_refresh = 0
        self._since_alert = 0
        self._start_ts: int | None = None
        self._last_alert_ts: int | None = None
        self._score_drift_ts: int | None = None
        self._silent_sent = False

    def _derive(self) -> None:
        cfg = self.cfg
        half = cfg.reference_events // 2
        self._b1 = cfg.warmup_events
        self._b2 = self._b1 + half
        self._b3 = self._b1 + cfg.reference_events
        self._ref_stride = half // cfg.ks_samples
        self._cur_stride = cfg.window_events // cfg.ks_samples
        self._nsub = cfg.window_events // cfg.check_every
        self._typecode = "B" if cfg.check_every < 256 else "H"
        self._layout = (
            cfg.warmup_events,
            cfg.reference_events,
            cfg.window_events,
            cfg.check_every,
            cfg.psi_bins,
            cfg.ks_samples,
        )

    @property
    def watched(self) -> list[str]:
        """The names of the watched series, sorted."""
        return [s.name for s in self._series]

    def _find(self, name: str) -> _Series | None:
        for s in self._series:
            if s.name == name:
                return s
        return None

    def _new_ph(self) -> Any:
        cfg = self.cfg
        return PageHinkley(
            min_instances=cfg.page_hinkley_min_instances,
            delta=cfg.page_hinkley_delta,
            threshold=cfg.page_hinkley_threshold,
            alpha=cfg.page_hinkley_alpha,
        )

    @property
    def series(self) -> list[str]:
        """The watched series, sorted."""
        return [s.name for s in self._series]

    # -- updates ---------------------------------------------------------------------------

    def update(
        self, ts_ms: int, values: Mapping[str, float], alerted: bool
    ) -> list[dict[str, Any]]:
        """Take one event of the entity; return the drift and health records it triggers.

        Parameters
        ----------
        ts_ms
            The event's timestamp (epoch ms); only reported, never compared.
        values
            The watched series present in the event: raw metric values and, under
            :data:`SCORE`, the anomaly score. Missing or non-finite values are skipped;
            names not watched are ignored.
        alerted
            Whether the detector judged this event anomalous.

        Returns
        -------
        list of dict
            Drift and health records (usually none), see the module docstring.
        """
        cfg = self.cfg
        if not cfg.enabled:
            return []
        out: list[dict[str, Any]] = []
        if cfg.refresh_events and self._since_refresh >= cfg.refresh_events:
            self.reset_reference()
        self._since_refresh += 1
        if self._start_ts is None:
            self._start_ts = ts_ms
        if alerted:
            self._since_alert = 0
            self._last_alert_ts = ts_ms
            self._silent_sent = False
        else:
            self._since_alert += 1
        score = self._score
        for s in self._series:
            x = values.get(s.name)
            if x is None or x - x != 0.0:  # missing, NaN or infinite
                continue
            self._push(s, ts_ms, x, out)
            if s is score and s.n > self._b1:
                self._page_hinkley(ts_ms, x, out)
        if (
            score is not None
            and not self._silent_sent
            and self._since_alert >= cfg.silent_after_events
            and self._score_in_drift(score)
        ):
            self._silent_sent = True
            out.append(self._silent_record(ts_ms))
        if cfg.action == "reset" and out and any(r["type"] == "drift" for r in out):
            self.reset_reference()
        return out

    def _score_in_drift(self, score: _Series) -> bool:
        if score.flags & (_PSI | _KS):
            return True
        seen, last = self._ph_state[0], self._ph_state[1]
        # A Page-Hinkley rise counts while recent and when no alert came after it (a rise the
        # detector alerted on is an incident it saw, not a blind detector).
        return last >= 0 and seen - last <= self.cfg.window_events and seen - last < self._since_alert

    def reset_reference(self) -> None:
        """Forget the reference and the current windows; rebuild them from the next values.

        Page-Hinkley restarts, drift and stale states are cleared (a drift that goes on is
        reported again once the new reference is complete). The alert history (events since
        the last alert) is kept: it is a fact about the detector, not about the reference.
        """
        self._series = [_blank_series(s.name, self._ref_stride) for s in self._series]
        self._score = self._find(SCORE)
        self._ph = self._new_ph()
        self._ph_state = [0, -1, 0, 0, 0, 0, 0]
        self._since_refresh = 0
        self._score_drift_ts = None
        self._silent_sent = False

    def _push(self, s: _Series, ts: int, x: float, out: list[dict[str, Any]]) -> None:
        i = s.n
        s.n = i + 1
        j = i - self._b3
        if j >= 0:  # monitoring: the current window
            cfg = self.cfg
            ce = cfg.check_every
            r = j % ce
            if r == 0:
                self._open_subwindow(s, j, ts)
            b = bisect_right(s.edges, x)
            s.ring[s.base + b] += 1
            s.sums[b] += 1
            if j == s.next_sample:
                stride = self._cur_stride
                block = j // stride
                s.cur_sample[block % cfg.ks_samples] = _clamp32(x)
                block += 1
                s.next_sample = block * stride + _sample_offset(block, stride)
            if r == ce - 1 and j >= cfg.window_events - 1:
                self._compare(s, ts, out)
            return
        k = i - self._b1
        if k < 0:  # warm-up
            return
        if i < self._b2:  # first half of the reference: the sample
            if k == 0:
                s.ref_from_ts = ts
            if k == s.next_sample:
                s.building.append(_clamp32(x))
                s.next_sample = _next_sample(k + 1, self._ref_stride)
            if i == self._b2 - 1:
                frozen = array("f", sorted(s.building))
                s.sample = le_bytes(frozen)
                s.building = array("f")
                bins = self.cfg.psi_bins
                s.edges = tuple(quantiles(frozen, [q / bins for q in range(1, bins)]))
                s.ref_counts = [0] * bins
            return
        s.ref_counts[bisect_right(s.edges, x)] += 1  # second half: the bin counts
        if i == self._b3 - 1:
            cfg = self.cfg
            s.ref_to_ts = ts
            s.ring = array(self._typecode, [0]) * (self._nsub * cfg.psi_bins)
            s.ring_ts = [0] * self._nsub
            s.sums = [0] * cfg.psi_bins
            s.cur_sample = array("f", [0.0]) * cfg.ks_samples
            s.next_sample = _sample_offset(0, self._cur_stride)

    def _open_subwindow(self, s: _Series, j: int, ts: int) -> None:
        bins = self.cfg.psi_bins
        slot = (j // self.cfg.check_every) % self._nsub
        base = slot * bins
        ring = s.ring
        sums = s.sums
        for b in range(bins):
            c = ring[base + b]
            if c:
                sums[b] -= c
                ring[base + b] = 0
        s.ring_ts[slot] = ts
        s.base = base

    def _compare(self, s: _Series, ts: int, out: list[dict[str, Any]]) -> None:
        """The check at the end of a sub-window: the ring holds exactly the last W values."""
        cfg = self.cfg
        current = sorted(s.cur_sample)
        psi_value = psi(s.ref_counts, s.sums)
        ks_value = ks_statistic(from_le_bytes("f", s.sample), current)
        oldest = (s.base // cfg.psi_bins + 1) % self._nsub
        ref = _span(s.ref_from_ts, s.ref_to_ts, cfg.reference_events)
        cur = _span(s.ring_ts[oldest], ts, cfg.window_events)
        for flag, statistic, value, threshold in (
            (_PSI, "psi", psi_value, cfg.psi_threshold),
            (_KS, "ks", ks_value, cfg.ks_threshold),
        ):
            if s.flags & flag:
                if value < cfg.clear_ratio * threshold:
                    s.flags &= ~flag
            elif value > threshold:
                s.flags |= flag
                out.append(self._drift_record(s.name, statistic, value, threshold, ref, cur))
                if s is self._score:
                    self._score_drift_ts = ts
        if s is not self._score:
            return
        iqr_lo, iqr_hi = quantiles(current, (0.25, 0.75))
        spread = iqr_hi - iqr_lo
        if s.flags & _STALE:
            if spread >= cfg.stale_spread:
                s.flags &= ~_STALE
        elif spread < cfg.stale_spread:
            s.flags |= _STALE
            out.append(
                {
                    "type": "health",
                    "check": "stale_model",
                    "feature": s.name,
                    "value": spread,
                    "threshold": cfg.stale_spread,
                    "reference": ref,
                    "current": cur,
                }
            )

    def _page_hinkley(self, ts: int, x: float, out: list[dict[str, Any]]) -> None:
        ph = self._ph
        st = self._ph_state
        ph.update(x)
        st[0] += 1
        n = ph._x_mean.n
        if n == 1:
            st[2] = ts
        if ph._sum_increase == ph._min_increase:
            st[3] = ts
            st[4] = int(n)
        if ph._sum_decrease == ph._max_decrease:
            st[5] = ts
            st[6] = int(n)
        if not ph._drift_detected:
            return
        up = ph._sum_increase - ph._min_increase
        down = ph._max_decrease - ph._sum_decrease
        if self.cfg.page_hinkley_direction == "up" and up <= self.cfg.page_hinkley_threshold:
            return  # the score fell: the models fit better, nothing to read (it restarts)
        last = st[1]
        st[1] = st[0]
        if last >= 0 and st[0] - last <= self.cfg.window_events:
            return  # the same drift, still going on
        self._score_drift_ts = ts
        cp_ts, cp_n = (st[3], st[4]) if up >= down else (st[5], st[6])
        out.append(
            self._drift_record(
                SCORE,
                "page_hinkley",
                float(max(up, down)),
                self.cfg.page_hinkley_threshold,
                _span(st[2], cp_ts, cp_n),
                _span(cp_ts, ts, int(n) - cp_n),
            )
        )

    def _drift_record(
        self,
        feature: str,
        statistic: str,
        value: float,
        threshold: float,
        reference: dict[str, int],
        current: dict[str, int],
    ) -> dict[str, Any]:
        return {
            "type": "drift",
            "feature": feature,
            "statistic": statistic,
            "value": value,
            "threshold": threshold,
            "reference": reference,
            "current": current,
            "action": self.cfg.action,
        }

    def _silent_record(self, ts: int) -> dict[str, Any]:
        last = self._last_alert_ts
        since = last if last is not None else self._start_ts
        return {
            "type": "health",
            "check": "silent_detector",
            "feature": SCORE,
            "value": self._since_alert,
            "threshold": self.cfg.silent_after_events,
            "events_since_alert": self._since_alert,
            "last_alert_ts": last,
            "score_drift_ts": self._score_drift_ts,
            "current": _span(since if since is not None else ts, ts, self._since_alert),
        }

    # -- inspection (tests, operators) -----------------------------------------------------

    def _get(self, name: str) -> _Series:
        s = self._find(name)
        if s is None:
            raise KeyError(f"series {name!r} is not watched (series: {self.series})")
        return s

    def is_monitoring(self, name: str) -> bool:
        """Whether the series' reference is frozen and its current window has filled."""
        return self._get(name).n - self._b3 >= self.cfg.window_events

    def reference_sample(self, name: str) -> list[float]:
        """The reference sample: frozen and sorted, or in arrival order while it grows."""
        s = self._get(name)
        if s.sample:
            return [float(v) for v in from_le_bytes("f", s.sample)]
        return list(s.building)

    def bin_edges(self, name: str) -> tuple[float, ...]:
        """The PSI bin edges (empty until the first half of the reference is complete)."""
        return self._get(name).edges

    def reference_counts(self, name: str) -> list[int]:
        """Reference values per PSI bin."""
        return list(self._get(name).ref_counts)

    def current_counts(self, name: str) -> list[int]:
        """Values per PSI bin in the sub-window ring (exactly the last W right after a check)."""
        return list(self._get(name).sums)

    def current_sample(self, name: str) -> list[float]:
        """The current KS sample, oldest first (one per block of the last W right after a check)."""
        s = self._get(name)
        k = self.cfg.ks_samples
        stride = self._cur_stride
        j = s.n - self._b3  # values in the current window so far
        if j <= 0:
            return []
        last = (j - 1) // stride  # the newest block whose sample has been taken
        if last * stride + _sample_offset(last, stride) >= j:
            last -= 1
        return [s.cur_sample[b % k] for b in range(max(last - k + 1, 0), last + 1)]

    def statistics(self, name: str) -> tuple[float, float]:
        """``(psi, ks)`` of the series now: the values checked, right after a check."""
        s = self._get(name)
        if not s.sums:
            raise ValueError(f"series {name!r}: the reference is not frozen yet")
        current = sorted(self.current_sample(name))
        return psi(s.ref_counts, s.sums), ks_statistic(self.reference_sample(name), current)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        """The monitor's state as plain data (tuples, ints, floats, str, bytes, None).

        Returns
        -------
        tuple
            ``(version, layout, series, health, page_hinkley)``; pass it to :meth:`restore`.
        """
        ph = self._ph
        mean = ph._x_mean
        series = tuple(
            (
                s.name,
                s.n,
                s.ref_from_ts,
                s.ref_to_ts,
                s.sample if s.sample else le_bytes(s.building),
                s.edges,
                tuple(s.ref_counts),
                le_bytes(s.ring),
                tuple(s.ring_ts),
                tuple(s.sums),
                le_bytes(s.cur_sample),
                s.flags,
            )
            for s in self._series
        )
        return (
            _SNAPSHOT_VERSION,
            self._layout,
            series,
            (
                self._since_refresh,
                self._since_alert,
                self._start_ts,
                self._last_alert_ts,
                self._score_drift_ts,
                self._silent_sent,
            ),
            (
                mean.n,
                mean._mean,
                ph._sum_increase,
                ph._sum_decrease,
                ph._min_increase,
                ph._max_decrease,
                ph._drift_detected,
                *self._ph_state,
            ),
        )

    @classmethod
    def restore(cls, cfg: DriftConfig, snap: tuple[Any, ...]) -> DriftMonitor:
        """Rebuild a monitor from :meth:`snapshot` output (after a pickle round trip too).

        The restored monitor continues exactly like the snapshotted one.

        Raises
        ------
        ValueError
            If the snapshot's version, or the layout it was taken with (``warmup_events,
            reference_events, window_events, check_every, psi_bins, ks_samples``), differ
            from ``cfg``'s: start a fresh monitor then.
        """
        self = cls.__new__(cls)
        self.cfg = cfg
        self._derive()
        if len(snap) != 5 or snap[0] != _SNAPSHOT_VERSION:
            raise ValueError(f"drift snapshot: unsupported version/shape {snap[:1]!r}")
        if tuple(snap[1]) != self._layout:
            raise ValueError(
                f"drift snapshot layout {tuple(snap[1])!r} does not match the config "
                f"{self._layout!r} (warmup_events, reference_events, window_events, "
                "check_every, psi_bins, ks_samples)"
            )
        _, _, series, health, ph_snap = snap
        b1, b2, b3 = self._b1, self._b2, self._b3
        ce = cfg.check_every
        restored = []
        for data in series:
            s = _Series()
            (
                s.name,
                n,
                s.ref_from_ts,
                s.ref_to_ts,
                sample,
                edges,
                ref_counts,
                ring,
                ring_ts,
                sums,
                cur_sample,
                s.flags,
            ) = data
            s.n = n
            s.edges = tuple(edges)
            s.ref_counts = list(ref_counts)
            s.ring = from_le_bytes(self._typecode, ring)
            s.ring_ts = list(ring_ts)
            s.sums = list(sums)
            s.cur_sample = from_le_bytes("f", cur_sample)
            s.base = 0
            if n < b2:
                s.building = from_le_bytes("f", sample)
                s.sample = b""
                s.next_sample = _next_sample(max(n - b1, 0), self._ref_stride)
            else:
                s.building = array("f")
                s.sample = bytes(sample)
                j = n - b3
                s.next_sample = _next_sample(max(j, 0), self._cur_stride)
                if j > 0:
                    s.base = (((j - 1) // ce) % self._nsub) * cfg.psi_bins
            restored.append(s)
        self._series = restored
        self._score = self._find(SCORE)
        (
            self._since_refresh,
            self._since_alert,
            self._start_ts,
            self._last_alert_ts,
            self._score_drift_ts,
            self._silent_sent,
        ) = health
        ph = self._new_ph()
        mean = ph._x_mean
        (
            mean.n,
            mean._mean,
            ph._sum_increase,
            ph._sum_decrease,
            ph._min_increase,
            ph._max_decrease,
            ph._drift_detected,
        ) = ph_snap[:7]
        self._ph = ph
        self._ph_state = list(ph_snap[7:])
        return self
