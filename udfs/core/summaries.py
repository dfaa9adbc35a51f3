"""Per-entity window summaries for dashboards: count, mean, min, max and p95 per metric.

The quantile comes from :class:`RelativeQuantileSketch`, a mergeable log-bucketed histogram
(the DDSketch idea): a value ``x > 0`` falls in bucket ``ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; any quantile it returns is within a relative error
``alpha`` (default 1 %) of a true sample value at that rank. Negative values use a mirrored
store, zero its own counter. Memory grows with the *spread* of the values (about
``log(max / min) / log(gamma)`` buckets), not with their number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["RelativeQuantileSketch", "SummaryAccumulator"]


class RelativeQuantileSketch:
    """A mergeable quantile sketch with bounded relative error.

    Examples
    --------
    >>> s = RelativeQuantileSketch(alpha=0.01)
    >>> for v in range(1, 101):
    ...     s.update(float(v))
    >>> round(s.quantile(0.95), 1), round(s.quantile(0.5), 1)
    (94.6, 49.9)
    """

    __slots__ = ("alpha", "_log_gamma", "_pos", "_neg", "_zero", "_n")

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self._log_gamma = math.log((1 + alpha) / (1 - alpha))
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}
        self._zero = 0
        self._n = 0

    @property
    def n(self) -> int:
        return self._n

    def _key(self, x: float) -> int:
        return math.ceil(math.log(x) / self._log_gamma)

    def update(self, x: float) -> None:
        self._n += 1
        if x > 0.0:
            k = self._key(x)
            self._pos[k] = self._pos.get(k, 0) + 1
        elif x < 0.0:
            k = self._key(-x)
            self._neg[k] = self._neg.get(k, 0) + 1
        else:
            self._zero += 1

    def merge(self, other: RelativeQuantileSketch) -> None:
        for k, c in other._pos.items():
            self._pos[k] = self._pos.get(k, 0) + c
        for k, c in other._neg.items():
            self._neg[k] = self._neg.get(k, 0) + c
        self._zero += other._zero
        self._n += other._n

    def _value(self, k: int) -> float:
        # The bucket's representative: relative error <= alpha for every value in it.
        return 2.0 * math.exp(k * self._log_gamma) / (1.0 + math.exp(self._log_gamma))

    def quantile(self, q: float) -> float:
        """The value at rank ``q * (n - 1)`` (lower), within relative error ``alpha``."""
        if self._n == 0:
            return math.nan
        rank = q * (self._n - 1)
        seen = 0
        for k in sorted(self._neg, reverse=True):
            seen += self._neg[k]
            if seen > rank:
                return -self._value(k)
        seen += self._zero
        if seen > rank:
            return 0.0
        for k in sorted(self._pos):
            seen += self._pos[k]
            if seen > rank:
                return self._value(k)
        return self._value(max(self._pos))

    def to_plain(self) -> tuple[Any, ...]:
        return (self.alpha, sorted(self._pos.items()), sorted(self._neg.items()), self._zero, self._n)

    @classmethod
    def from_plain(cls, data: tuple[Any, ...]) -> RelativeQuantileSketch:
        alpha, pos, neg, zero, n = data
        s = cls(alpha)
        s._pos = dict(pos)
        s._neg = dict(neg)
        s._zero = zero
        s._n = n
        return s


class SummaryAccumulator:
    """count, sum, min, max and a quantile sketch per metric; mergeable."""

    __slots__ = ("alpha", "metrics")

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = alpha
        self.metrics: dict[str, list[Any]] = {}

    def add(self, metrics: Mapping[str, float]) -> None:
        for name, x in metrics.items():
            m = self.metrics.get(name)
            if m is None:
                m = self.metrics[name] = [0, 0.0, math.inf, -math.inf, RelativeQuantileSketch(self.alpha)]
            m[0] += 1
            m[1] += x
            if x < m[2]:
                m[2] = x
            if x > m[3]:
                m[3] = x
            m[4].update(x)

    def merge(self, other: SummaryAccumulator) -> None:
        for name, o in other.metrics.items():
            m = self.metrics.get(name)
            if m is None:
                self.metrics[name] = [o[0], o[1], o[2], o[3], RelativeQuantileSketch.from_plain(o[4].to_plain())]
                continue
            m[0] += o[0]
            m[1] += o[1]
            m[2] = min(m[2], o[2])
            m[3] = max(m[3], o[3])
            m[4].merge(o[4])

    def result(self) -> dict[str, dict[str, float]]:
        return {
            name: {"count": m[0], "mean": m[1] / m[0], "min": m[2], "max": m[3], "p95": m[4].quantile(0.95)}
            for name, m in sorted(self.metrics.items())
        }
