"""The statistics of the drift monitor (``docs/drift.md``): the Population Stability Index,
the two-sample Kolmogorov-Smirnov statistic, Page-Hinkley (River's, step for step), the
quantiles that make the PSI bins, and the hashed sampling of a series into blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["PSI_EPSILON", "PageHinkley", "clamp32", "ks_statistic", "next_sample", "psi", "quantiles", "sample_offset"]

#: Floor of a bin share in :func:`psi` (an empty bin would make the index infinite).
PSI_EPSILON = 1e-4
_FLOAT32_MAX = 3.0e38


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


def sample_offset(block: int, stride: int) -> int:
    """Position in ``[0, stride)`` of the value sampled from a block (multiplicative hash)."""
    return (((block * 2654435761) & 0xFFFFFFFF) * stride) >> 32


def next_sample(k: int, stride: int) -> int:
    """Index of the first sampled value at or after index ``k``."""
    block = k // stride
    at = block * stride + sample_offset(block, stride)
    if at < k:
        block += 1
        at = block * stride + sample_offset(block, stride)
    return at


def clamp32(x: float) -> float:
    if x > _FLOAT32_MAX:
        return _FLOAT32_MAX
    if x < -_FLOAT32_MAX:
        return -_FLOAT32_MAX
    return x
