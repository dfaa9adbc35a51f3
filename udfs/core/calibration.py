"""Per-entity calibration of raw scores and the adaptive threshold, in bounded memory.

Raw scores (a robust z, a Half-Space-Trees score) mean different things for different
entities: a z of 4 is routine for a bursty series and unheard of for a calm one. So each
entity turns each raw score into *rarity* against its own past, with
:class:`DecayedHistogram`: a histogram over fixed bin edges whose counts decay
exponentially (older observations weigh less), which gives an online ECDF in constant memory.

Rarity is expressed as ``u = -log10(S)`` where ``S`` is the estimated survival probability
(the share of past raw scores at or above this one): ``u = 3`` means "one in a thousand".
Beyond the highest value the entity has seen, the empirical tail is extended by an
exponential tail in the histogram's coordinate, so that "far beyond anything seen" still
ranks above "just beyond" (severity needs that resolution).

The adaptive threshold (:class:`AdaptiveThreshold`) is an online quantile of the entity's own
combined rarity, aiming at a target alert rate, with a global fallback while it warms up.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AdaptiveThreshold",
    "DecayedHistogram",
    "Floats",
    "linear_edges",
    "log_edges",
    "stored_length",
    "trim_zeros",
    "untrim_zeros",
]

_RENORMALISE_AT = 1e150
#: Edges already computed, by ``(lo, hi, n)``: a detector restored from state builds a
#: histogram per score (edges are shared, not state), and computing them was most of a
#: restore. Bounded: a configuration has a handful of shapes.
_EDGES: dict[tuple[float, float, int], tuple[float, ...]] = {}


#: A float list as stored: the list, or ``(length, start, the items from start up to the
#: last one that is not +0.0)`` when +0.0 items at either end were left out. A young
#: entity's histograms and day profile are nearly all zeros, and unpickling each of those
#: floats was most of reading its state.
Floats = list[float] | tuple[int, int, list[float]]


def _zero(v: float) -> bool:
    return v == 0.0 and math.copysign(1.0, v) > 0.0  # (-0.0 is kept: the bits come back)


def trim_zeros(values: list[float]) -> Floats:
    """``values`` as stored (:data:`Floats`; a copy either way): without the +0.0 items at
    either end when there are any.

    >>> trim_zeros([0.0, 0.0, 1.5, 0.0, 2.0, 0.0])
    (6, 2, [1.5, 0.0, 2.0])
    >>> trim_zeros([-0.0, 0.0])
    (2, 0, [-0.0])
    """
    n = len(values)
    start = 0
    while start < n and _zero(values[start]):
        start += 1
    if start == n:
        return (n, n, [])
    end = n
    while _zero(values[end - 1]):
        end -= 1
    if start == 0 and end == n:
        return list(values)
    return (n, start, values[start:end])


def untrim_zeros(stored: Floats | tuple[Any, ...]) -> list[float]:
    """The list :func:`trim_zeros` stored (a new list; a full list, as earlier releases
    stored it, is copied).

    >>> untrim_zeros((6, 2, [1.5, 0.0, 2.0]))
    [0.0, 0.0, 1.5, 0.0, 2.0, 0.0]
    """
    if isinstance(stored, list):
        return list(stored)
    n, start, middle = stored
    return [0.0] * start + list(middle) + [0.0] * (n - start - len(middle))


def stored_length(stored: Floats | tuple[Any, ...]) -> int:
    """The length of the list :func:`trim_zeros` stored."""
    return len(stored) if isinstance(stored, list) else int(stored[0])


def linear_edges(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n + 1`` evenly spaced bin edges from ``lo`` to ``hi``."""
    key = (lo, hi, n)
    edges = _EDGES.get(key)
    if edges is None:
        step = (hi - lo) / n
        edges = tuple(lo + i * step for i in range(n + 1))
        if len(_EDGES) < 64:
            _EDGES[key] = edges
    return edges


def log_edges(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``0`` then ``n`` geometrically spaced edges from ``lo`` to ``hi``."""
    ratio = (hi / lo) ** (1.0 / (n - 1))
    return (0.0,) + tuple(lo * ratio**i for i in range(n))


class DecayedHistogram:
    """An exponentially decayed histogram: an online ECDF in constant memory.

    Parameters
    ----------
    edges
        Increasing bin edges (shared, not part of the state). Values below the first edge
        count in the first bin, values above the last in the last bin.
    half_life
        Number of updates after which an observation weighs half as much.

    Examples
    --------
    >>> h = DecayedHistogram(linear_edges(0.0, 10.0, 10), half_life=1e9)
    >>> for v in range(10):
    ...     h.update(v + 0.5)
    >>> round(h.survival(5.0), 3), round(h.survival(9.9), 3)
    (0.5, 0.055)
    """

    __slots__ = ("edges", "half_life", "_counts", "_weight", "_growth", "_total", "_updates")

    def __init__(self, edges: Sequence[float], half_life: float) -> None:
        self.edges = tuple(edges)
        self.half_life = half_life
        self._counts = [0.0] * (len(self.edges) - 1)
        # Instead of multiplying every count by the decay on every update (O(bins)), each new
        # observation weighs more than the last by 1/decay; renormalise before overflow.
        self._weight = 1.0
        self._growth = 2.0 ** (1.0 / half_life)
        self._total = 0.0
        self._updates = 0

    @property
    def n(self) -> float:
        """Effective number of observations (decayed), in units of the newest one.

        Bounded by about ``half_life / ln 2``: use :attr:`updates` to count observations.
        """
        return self._total * self._growth / self._weight if self._updates else 0.0

    @property
    def updates(self) -> int:
        """How many observations were ever added (no decay)."""
        return self._updates

    def count(self) -> None:
        """Count an observation without adding it (:attr:`updates` only)."""
        self._updates += 1

    def _bin(self, x: float) -> int:
        i = bisect_right(self.edges, x) - 1
        if i < 0:
            return 0
        last = len(self._counts) - 1
        return i if i < last else last

    def update(self, x: float) -> None:
        i = self._bin(x)
        w = self._weight
        self._counts[i] += w
        self._total += w
        self._updates += 1
        w *= self._growth
        if w > _RENORMALISE_AT:
            self._counts = [c / w for c in self._counts]
            self._total /= w
            w = 1.0
        self._weight = w

    def survival(self, x: float, tail_scale: float = 0.0, prior: float = 0.5) -> float:
        """Estimated ``P(X >= x)``, with ``prior`` of the next observation's weight counted
        at the top (so never 0; with ``prior < 1`` never 1 either).

        Inside a bin the mass is taken as uniform. Above the highest bin holding mass, the
        survival decays as ``exp(-(x - top) / tail_scale)`` when ``tail_scale > 0``.
        """
        counts = self._counts
        total = self._total
        w = self._weight
        if total <= 0.0:
            return 1.0
        i = self._bin(x)
        above = 0.0
        for j in range(len(counts) - 1, i, -1):
            above += counts[j]
        lo = self.edges[i]
        hi = self.edges[i + 1]
        frac = 0.0 if hi <= lo else min(max((hi - x) / (hi - lo), 0.0), 1.0)
        s = (above + counts[i] * frac + prior * w) / (total + w)
        if tail_scale > 0.0 and above == 0.0:
            top = self._top_edge()
            if x > top:
                s *= math.exp(-(x - top) / tail_scale)
        return s

    def rarity(self, x: float, prior: float, extrapolate: float = 0.0) -> float:
        """``-log10`` of :meth:`survival` with ``prior`` and no exponential tail; beyond the
        highest bin that ever held mass, plus ``extrapolate`` decades per unit of ``x`` past
        that bin's upper edge (``1 / ln 2`` per unit of ``log1p`` of a score: one decade per
        doubling of ``1 + score``), so "far beyond anything seen" still ranks.

        >>> h = DecayedHistogram(linear_edges(0.0, 1.0, 10), half_life=1e9)
        >>> for v in (0.05, 0.15, 0.15, 0.25):
        ...     h.update(v)
        >>> round(h.rarity(0.2, 1.0), 4), round(h.rarity(0.55, 1.0, 2.0), 4)
        (0.3979, 1.199)
        """
        if self._total <= 0.0:
            return 0.0
        s = self.survival(x, 0.0, prior)
        r = -math.log10(s) if s < 1.0 else 0.0
        if extrapolate > 0.0:
            top = self._top_edge()
            if x > top:
                r += (x - top) * extrapolate
        return r

    def _top_edge(self) -> float:
        counts = self._counts
        for j in range(len(counts) - 1, -1, -1):
            if counts[j] > 0.0:
                return self.edges[j + 1]
        return self.edges[0]

    def quantile_upper(self, tail: float) -> float:
        """The value above which a share ``tail`` of the mass lies (linear inside a bin)."""
        counts = self._counts
        target = tail * self._total
        acc = 0.0
        for j in range(len(counts) - 1, -1, -1):
            c = counts[j]
            if acc + c >= target and c > 0.0:
                need = (target - acc) / c
                return self.edges[j + 1] - need * (self.edges[j + 1] - self.edges[j])
            acc += c
        return self.edges[0]

    @staticmethod
    def trim(values: list[float]) -> Floats:
        """:func:`trim_zeros`, through the class: the other compiled modules call the
        compiled function this way (only the classes of a compiled copy are bound)."""
        return trim_zeros(values)

    def snapshot(self) -> tuple[Floats, float, float, int]:
        """The counts without the empty bins at either end (:func:`trim_zeros`),
        the weight, the total and the updates."""
        return (trim_zeros(self._counts), self._weight, self._total, self._updates)

    def restore(self, snap: tuple[Floats, float, float, int]) -> None:
        """What :meth:`snapshot` gave (or, from earlier releases, the counts in full)."""
        stored, weight, total, updates = snap
        counts = untrim_zeros(stored)
        if len(counts) != len(self._counts):
            raise ValueError(
                f"histogram snapshot has {len(counts)} bins, configuration has {len(self._counts)}"
            )
        self._counts = counts
        self._weight = weight
        self._total = total
        self._updates = updates


# Rarity u = -log10(survival) is binned on [0, 8] decades.
RARITY_EDGES = linear_edges(0.0, 8.0, 128)


class AdaptiveThreshold:
    """A per-entity threshold on rarity: ``floor`` decades, and with a ``target_rate`` at
    least the ``1 - target_rate`` quantile of the entity's own rarity.

    With ``target_rate`` 0 the threshold is ``floor`` plus a warm-up margin that fades
    linearly from ``fallback_margin`` on the first score to 0 at ``min_events`` scores.
    Otherwise it is the larger of ``floor`` and the quantile, estimated from a
    :class:`DecayedHistogram`; until the entity has ``min_events`` scores,
    ``floor + fallback_margin``. Either way new entities are judged more strictly, not less.

    Parameters
    ----------
    target_rate
        Wanted share of alerting events, e.g. ``0.001``; 0 for a fixed threshold.
    min_events
        Scores needed before the entity's own quantile replaces the fallback.
    half_life
        Decay half life of the score histogram, in events.
    fallback_margin
        Extra decades on top of ``floor`` while warming up.
    floor
        The lowest threshold, in decades (default ``-log10(target_rate)``: a calibrated
        score's own quantile, so a well-behaved entity alerts at most at the target rate).

    >>> t = AdaptiveThreshold(0.0, 10, 100.0, 0.5, 1.75)
    >>> t.current()
    2.25
    >>> for _ in range(4):
    ...     t.update(0.0)
    >>> t.current()
    2.05
    >>> for _ in range(6):
    ...     t.update(0.0)
    >>> t.current()
    1.75
    """

    __slots__ = ("target_rate", "min_events", "fallback_margin", "_hist", "_floor")

    def __init__(
        self,
        target_rate: float,
        min_events: int,
        half_life: float,
        fallback_margin: float,
        floor: float | None = None,
    ) -> None:
        self.target_rate = target_rate
        self.min_events = min_events
        self.fallback_margin = fallback_margin
        self._hist = DecayedHistogram(RARITY_EDGES, half_life)
        if floor is None:
            floor = -math.log10(target_rate) if target_rate > 0.0 else 0.0
        self._floor = floor

    def current(self) -> float:
        """The threshold in rarity units (decades)."""
        if self.target_rate <= 0.0:
            young = self.min_events - self._hist.updates
            if young > 0:
                return self._floor + self.fallback_margin * young / self.min_events
            return self._floor
        if self._hist.updates < self.min_events:
            return self._floor + self.fallback_margin
        return max(self._hist.quantile_upper(self.target_rate), self._floor)

    def update(self, rarity: float) -> None:
        if self.target_rate > 0.0:
            self._hist.update(rarity)
        else:
            self._hist.count()

    @property
    def updates(self) -> int:
        return self._hist.updates

    def snapshot(self) -> tuple[Floats, float, float, int]:
        return self._hist.snapshot()

    def restore(self, snap: tuple[Floats, float, float, int]) -> None:
        self._hist.restore(snap)


def rarity_to_score(u: float) -> float:
    """Map rarity (decades) to an anomaly score in [0, 1): ``1 - 10**-u``."""
    return 1.0 - math.pow(10.0, -u)


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions. Only the classes below
# are taken from it; configuration classes stay pure (they travel pickled with the operator).
if __name__ == "udfs.core.calibration":
    from udfs.core.native import bind

    bind(globals(), __file__, "calibration")
