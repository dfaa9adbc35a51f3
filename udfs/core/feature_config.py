"""Configuration of the window features (:mod:`udfs.core.features`).

Kept apart from the features themselves so that a compiled copy of those
(``scripts/build_native.py``) takes these classes as they are: a configuration is
pickled with the Flink operator that holds it, and frozen dataclasses compiled by
mypyc cannot be unpickled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FeatureConfig", "WindowSpec"]


def _check_positive_int(problems: list[str], field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        problems.append(f"{field} must be a positive int, got {value!r}")


def _check(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class WindowSpec:
    """One event-time sliding window.

    Parameters
    ----------
    name : str
        Short name used in feature names, e.g. ``"5m"`` (no ``"."``).
    length_ms : int
        Window length ``L`` in milliseconds.
    buckets : int
        Number of buckets the window is split into; must divide ``length_ms``.
        The bucket width ``length_ms // buckets`` bounds the window-edge
        approximation (see the module docstring).

    Raises
    ------
    ValueError
        Naming every invalid field and its value.
    """

    name: str
    length_ms: int
    buckets: int

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            problems.append(
                f"window name must be a non-empty str without '.', got {self.name!r}"
            )
        _check_positive_int(problems, f"window {self.name!r} length_ms", self.length_ms)
        _check_positive_int(problems, f"window {self.name!r} buckets", self.buckets)
        if not problems and self.length_ms % self.buckets:
            problems.append(
                f"window {self.name!r} buckets={self.buckets} must divide "
                f"length_ms={self.length_ms}"
            )
        _check(problems)

    @property
    def width_ms(self) -> int:
        """Bucket width in milliseconds."""
        return self.length_ms // self.buckets


_DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("1m", 60_000, 12),
    WindowSpec("5m", 300_000, 10),
    WindowSpec("1h", 3_600_000, 12),
    WindowSpec("24h", 86_400_000, 24),
)


@dataclass(frozen=True)
class FeatureConfig:
    """Configuration of :class:`EntityFeatures`.

    Parameters
    ----------
    windows : tuple of WindowSpec
        Sliding windows, unique names.
    ratio_pairs : tuple of (str, str)
        ``(short, long)`` window names; yields ``<metric>.<short>_<long>.ratio``
        = short mean / long mean.
    cross_ratios : tuple of (str, str)
        ``(numerator_metric, denominator_metric)``; yields
        ``<num>_per_<den>.value`` = ratio of the two values of the same event.
    max_gap_ms : int
        A gap between consecutive events of a metric longer than
        ``max(max_gap_ms, max_gap_fraction * L)`` makes the window of length
        ``L`` not ready until it has refilled after the gap.
    max_gap_fraction : float
        The share of a window's length that a gap may span before that window
        stops being ready (a 10-minute gap spoils a 5-minute window, not a
        24-hour one; hourly data can still fill a daily window).
    min_count : int
        A window with fewer events is not ready.
    robust_windows : tuple of str
        Windows that also get the median/MAD robust z-score ``rzscore``.
    robust_samples_per_bucket : int
        Values retained per bucket for the robust statistics (first ``k``).
    max_metrics : int
        Most metric names an entity keeps. A new name beyond it takes the place of the
        name seen least recently (its windows are dropped; ties by name), so an entity
        whose events carry ever new names (a label or a request id in the name) stays
        bounded; an event carrying more metrics than this keeps the first ``max_metrics``
        by name.

    Raises
    ------
    ValueError
        Naming every invalid field and its value, all at once.

    Notes
    -----
    Lists (e.g. from YAML) are accepted and stored as tuples; a window may be
    given as a mapping with keys ``name``, ``length_ms``, ``buckets``.
    """

    windows: tuple[WindowSpec, ...] = _DEFAULT_WINDOWS
    ratio_pairs: tuple[tuple[str, str], ...] = (("1m", "1h"),)
    cross_ratios: tuple[tuple[str, str], ...] = ()
    max_gap_ms: int = 600_000
    max_gap_fraction: float = 0.25
    min_count: int = 3
    robust_windows: tuple[str, ...] = ()
    robust_samples_per_bucket: int = 8
    max_metrics: int = 64

    def __post_init__(self) -> None:
        problems: list[str] = []
        windows: list[WindowSpec] = []
        for spec in _as_tuple(problems, "windows", self.windows):
            if isinstance(spec, Mapping):
                try:
                    spec = WindowSpec(**spec)
                except (TypeError, ValueError) as exc:
                    problems.append(f"windows: {exc}")
                    continue
            if not isinstance(spec, WindowSpec):
                problems.append(f"windows must hold WindowSpec, got {spec!r}")
                continue
            windows.append(spec)
        object.__setattr__(self, "windows", tuple(windows))
        names = [w.name for w in windows]
        if not names and not problems:
            problems.append("windows must not be empty, got ()")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"windows: duplicate window names {dupes}")
        ratio_pairs = _pairs(problems, "ratio_pairs", self.ratio_pairs)
        object.__setattr__(self, "ratio_pairs", ratio_pairs)
        for pair in ratio_pairs:
            unknown = [n for n in pair if n not in names]
            if unknown:
                problems.append(
                    f"ratio_pairs: {pair!r} names unknown windows {unknown} "
                    f"(windows: {names})"
                )
        object.__setattr__(
            self, "cross_ratios", _pairs(problems, "cross_ratios", self.cross_ratios)
        )
        robust = _as_tuple(problems, "robust_windows", self.robust_windows)
        object.__setattr__(self, "robust_windows", robust)
        for wname in robust:
            if wname not in names:
                problems.append(
                    f"robust_windows: unknown window {wname!r} (windows: {names})"
                )
        _check_positive_int(problems, "max_gap_ms", self.max_gap_ms)
        if not 0.0 < self.max_gap_fraction <= 1.0:
            problems.append(f"max_gap_fraction must be in (0, 1], got {self.max_gap_fraction!r}")
        _check_positive_int(problems, "min_count", self.min_count)
        _check_positive_int(
            problems, "robust_samples_per_bucket", self.robust_samples_per_bucket
        )
        _check_positive_int(problems, "max_metrics", self.max_metrics)
        _check(problems)


def _as_tuple(problems: list[str], field: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        problems.append(f"{field} must be a sequence, got {value!r}")
        return ()
    return tuple(value)


def _pairs(problems: list[str], field: str, value: object) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for pair in _as_tuple(problems, field, value):
        items = tuple(pair) if isinstance(pair, (list, tuple)) else ()
        if len(items) != 2 or not all(isinstance(s, str) and s for s in items):
            problems.append(f"{field}: expected a pair of non-empty str, got {pair!r}")
            continue
        out.append((items[0], items[1]))
    return tuple(out)
