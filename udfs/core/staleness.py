"""Stale entities: an entity that stopped reporting, judged against its own cadence.

An entity is *stale* when it has sent no event for ``silence_ms`` of event time after its
newest scored event, where

    ``silence_ms = min(max(min_silence_ms, ceil(gap_factor * interval_ms)), idle_ttl_ms // 2)``

and ``interval_ms`` is the entity's typical inter-arrival time: the (lower) median of the
gaps between its last ``gap_samples`` consecutive events, in timestamp order
(:class:`InterArrival`). The median, not a mean: one outage, or one burst, moves it by at most
one position. ``gap_factor`` is large (20) because many entities do not report on a clock: for
Poisson arrivals the median gap is ``ln 2`` of the mean, so a gap of 20 medians has
probability ``2^-20`` (about ``1e-6``) per gap, while an entity that reports every 10 s is
stale after ``min_silence_ms`` (5 min by default). The threshold is capped at half of
``detector.lateness.idle_ttl_ms``, so the record always comes well before the entity's state
is forgotten. An entity with a single event has no cadence yet: it is never stale (its idle
expiry still forgets it).

The detector (:mod:`udfs.core.detector`) decides, from event time alone, in two places that
agree: when the watermark passes ``last_ts + silence_ms`` (``on_watermark``, Flink's timer)
and, if no watermark got there first, when the entity's next event arrives later than that
(``on_event``, the replay). Either way one ``stale_entity`` record is emitted per silence,
dated at the deadline, with the same content; when the entity comes back before its idle
expiry an ``entity_returned`` record follows, dated at the returning event. An entity that
comes back after its idle expiry starts fresh (no ``entity_returned``: its past is gone). At
the end of a bounded input (Flink's final watermark, the replay's flush) every armed entity
that is not stale yet gets its ``stale_entity`` record: end of input says no event will ever
come, exactly like the idle expiry's ``resolved`` records.

Records (``type: health``, beside ``silent_detector`` and ``stale_model`` on the drift
output; the detector adds ``entity``, ``ts``, ``ts_ms`` and ``config_version``)::

    {"type": "health", "check": "stale_entity", "value": 300000, "threshold": 300000,
     "silence_ms": 300000, "expected_interval_ms": 10000, "last_seen_ts": "...",
     "last_seen_ts_ms": ..., "current": {"from_ts": last_seen, "to_ts": deadline, "events": 0}}
    {"type": "health", "check": "entity_returned", "value": 3600000, "threshold": 300000,
     "silence_ms": 3600000, "expected_interval_ms": 10000, "last_seen_ts": "...",
     "last_seen_ts_ms": ..., "current": {"from_ts": last_seen, "to_ts": returned, "events": 0}}

``value`` is the silence observed (at the deadline, for ``stale_entity``: equal to the
threshold; the whole gap for ``entity_returned``), ``threshold`` the entity's ``silence_ms``.
A record dated inside one of the entity's maintenance windows (:mod:`udfs.core.maintenance`)
carries ``"maintenance": true``, as alert records do: a planned silence, most likely.

Examples
--------
>>> cfg = StalenessConfig(min_silence_ms=60_000, gap_factor=20.0, gap_samples=5)
>>> gaps = InterArrival(cfg.gap_samples)
>>> for gap in (10_000, 10_000, 12_000, 9_000, 400_000):  # one long gap does not count much
...     gaps.update(gap)
>>> gaps.get(), silence_threshold_ms(cfg, gaps.get(), idle_ttl_ms=86_400_000)
(10000, 200000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["InterArrival", "StalenessConfig", "silence_threshold_ms"]


@dataclass(frozen=True)
class StalenessConfig:
    """When an entity counts as stale (see the module docstring).

    Parameters
    ----------
    enabled
        When false no entity is ever stale (no record, no timer).
    min_silence_ms
        The shortest silence that makes an entity stale, whatever its cadence.
    gap_factor
        An entity is stale after ``gap_factor`` times its median inter-arrival time (when
        that is longer than ``min_silence_ms``).
    gap_samples
        How many of the entity's latest gaps its median is taken over.

    Raises
    ------
    ValueError
        Naming every invalid field and its value, all at once.
    """

    enabled: bool = True
    min_silence_ms: int = 300_000
    gap_factor: float = 20.0
    gap_samples: int = 16

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.enabled, bool):
            problems.append(f"enabled must be a bool, got {self.enabled!r}")
        if not isinstance(self.min_silence_ms, int) or self.min_silence_ms < 1:
            problems.append(f"min_silence_ms must be an int >= 1, got {self.min_silence_ms!r}")
        if not isinstance(self.gap_factor, (int, float)) or not self.gap_factor > 0:
            problems.append(f"gap_factor must be > 0, got {self.gap_factor!r}")
        if not isinstance(self.gap_samples, int) or not 1 <= self.gap_samples <= 1024:
            problems.append(f"gap_samples must be an int in [1, 1024], got {self.gap_samples!r}")
        if problems:
            raise ValueError("; ".join(problems))


def silence_threshold_ms(cfg: StalenessConfig, interval_ms: int, idle_ttl_ms: int) -> int:
    """``min(max(min_silence_ms, ceil(gap_factor * interval_ms)), idle_ttl_ms // 2)``.

    Examples
    --------
    >>> cfg = StalenessConfig()
    >>> silence_threshold_ms(cfg, 10_000, 172_800_000)  # every 10 s: the 5 min floor
    300000
    >>> silence_threshold_ms(cfg, 60_000, 172_800_000)  # every minute: 20 minutes
    1200000
    >>> silence_threshold_ms(cfg, 7_200_000, 172_800_000)  # every 2 h: 40 h, capped at 24 h
    86400000
    """
    relative = math.ceil(cfg.gap_factor * interval_ms)
    return min(max(cfg.min_silence_ms, relative), idle_ttl_ms // 2)


class InterArrival:
    """The latest ``samples`` gaps between consecutive events; ``get`` is their lower median.

    Parameters
    ----------
    samples
        How many gaps are kept (a ring; the oldest goes first).

    Examples
    --------
    >>> ia = InterArrival(4)
    >>> ia.get() is None
    True
    >>> for gap in (5, 1, 9, 3, 7):
    ...     ia.update(gap)
    >>> ia.snapshot(), ia.get()  # gaps 1, 9, 3, 7: sorted 1 3 7 9, lower median 3
    ((1, 9, 3, 7), 3)
    """

    __slots__ = ("samples", "_gaps", "_median")

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self._gaps: list[int] = []
        self._median: int | None = None

    def update(self, gap_ms: int) -> None:
        gaps = self._gaps
        gaps.append(gap_ms)
        if len(gaps) > self.samples:
            del gaps[0]
        ordered = sorted(gaps)
        self._median = ordered[(len(ordered) - 1) // 2]

    def get(self) -> int | None:
        """The lower median of the kept gaps, or None before the first gap."""
        return self._median

    def snapshot(self) -> tuple[int, ...]:
        """The kept gaps, oldest first."""
        return tuple(self._gaps)

    @classmethod
    def restore(cls, samples: int, gaps: Any) -> InterArrival:
        """Rebuild from :meth:`snapshot` (keeps the newest ``samples`` if that shrank)."""
        self = cls(samples)
        for gap in list(gaps)[-samples:] if samples else []:
            self.update(int(gap))
        return self


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions. Only the classes below
# are taken from it; configuration classes stay pure (they travel pickled with the operator).
if __name__ == "udfs.core.staleness":
    from udfs.core.native import bind

    bind(globals(), __file__, "staleness")
