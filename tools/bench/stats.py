"""Arithmetic of the measurements (pure): marginal rates, fixed costs, percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# -- arithmetic (pure) -----------------------------------------------------------------------


def marginal_rate(n1: int, t1: float, n2: int, t2: float) -> float | None:
    """``(n2 - n1) / (t2 - t1)``: the rate of the extra events, fixed costs cancelled.

    ``None`` when the larger input did not take longer (noise swamped the signal: run longer).

    Examples
    --------
    >>> marginal_rate(1000, 7.0, 5000, 9.0)  # 4,000 more events in 2 more seconds
    2000.0
    """
    if n2 <= n1:
        raise ValueError(f"need n2 > n1, got n1={n1}, n2={n2}")
    if t2 <= t1:
        return None
    return (n2 - n1) / (t2 - t1)


def fixed_cost(n1: int, t1: float, rate: float | None) -> float | None:
    """What the marginal rate attributes to start-up and shut-down: ``t1 - n1 / rate``."""
    return None if not rate else t1 - n1 / rate


def fastest(samples: Iterable[tuple[int, float]]) -> dict[int, float]:
    """The smallest time per input size (noise on a shared machine only ever adds time)."""
    best: dict[int, float] = {}
    for n, t in samples:
        if n not in best or t < best[n]:
            best[n] = t
    return best


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Linear-interpolated percentiles (numpy's default method), ``qs`` in [0, 100].

    Examples
    --------
    >>> percentiles([1.0, 2.0, 3.0, 4.0], [50, 100])
    [2.5, 4.0]
    """
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    out = []
    for q in qs:
        pos = (len(xs) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


