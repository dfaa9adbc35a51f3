"""Maintenance windows: when an entity's anomalies are expected and must not page anyone.

Two kinds of window, both matched on the entity name with a glob
(:func:`fnmatch.fnmatchcase`, case-sensitive):

- :class:`MaintenanceWindow`: one explicit interval ``[start, end)`` given as ISO-8601
  timestamps (a missing offset means UTC; epoch milliseconds are accepted too);
- :class:`RecurringWindow`: every selected weekday at ``start`` (``HH:MM``, UTC) for
  ``minutes`` minutes. A window may run past midnight (``sun 23:30`` for 60 minutes covers
  Sunday 23:30 to Monday 00:30, across the week boundary too).

Every window includes its start and excludes its end: an event at exactly ``end`` is outside.

:func:`in_maintenance` is pure and cheap: each configuration is compiled once (intervals in
epoch ms, recurring windows as offsets into the week) and the windows that apply to an entity
are cached per (configuration, entity). With no window configured it returns at once.

What the detector does during maintenance is configured by :attr:`MaintenanceConfig.learn`:
by default the models do not learn from maintenance traffic (restarts, drains and migrations
are not the normal an entity should be judged against afterwards); no alert opens either way.

Examples
--------
>>> cfg = MaintenanceConfig(
...     windows=(MaintenanceWindow("db-*", "2026-01-03T02:00:00Z", "2026-01-03T03:00:00Z"),),
...     recurring=(RecurringWindow("srv-*", days="sun", start="23:30", minutes=60),),
... )
>>> from udfs.core.events import parse_timestamp as ts
>>> in_maintenance(cfg, "db-1", ts("2026-01-03T02:00:00Z"))  # start: inside
True
>>> in_maintenance(cfg, "db-1", ts("2026-01-03T03:00:00Z"))  # end: outside
False
>>> in_maintenance(cfg, "srv-1", ts("2026-01-05T00:15:00Z"))  # Monday 00:15, from Sunday
True
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from udfs.core.checks import glob_problem
from udfs.core.events import parse_timestamp

__all__ = [
    "DAY_NAMES",
    "MaintenanceConfig",
    "MaintenanceWindow",
    "RecurringWindow",
    "in_maintenance",
    "parse_days",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MIN_MS = 60_000
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_WEEK_MINUTES = 7 * 1440
# 1970-01-01 was a Thursday: shifting epoch ms by 3 days makes 0 a Monday 00:00 UTC.
_EPOCH_TO_MONDAY_MS = 3 * _DAY_MS


def _iso_ms(field: str, value: object, problems: list[str]) -> int | None:
    ts = parse_timestamp(value) if isinstance(value, str) else None
    if ts is None:
        problems.append(
            f"{field}: expected an ISO-8601 timestamp such as '2026-01-03T02:00:00Z' "
            f"(quoted in YAML), got {value!r}"
        )
    return ts


def parse_days(text: str) -> tuple[int, ...]:
    """Weekday numbers (Monday 0) of ``"mon,wed"``, ``"mon-fri"``, ``"fri-mon"`` or ``"*"``.

    Names are case-insensitive; a range may wrap over the end of the week. Raises
    ``ValueError`` naming the part it cannot read.

    >>> parse_days("mon-fri"), parse_days("sat,sun"), parse_days("fri-mon"), parse_days("*")
    ((0, 1, 2, 3, 4), (5, 6), (0, 4, 5, 6), (0, 1, 2, 3, 4, 5, 6))
    """
    text = text.strip().lower()
    if text == "*":
        return tuple(range(7))
    days: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        names = (lo.strip(), hi.strip()) if sep else (lo.strip(),)
        if not all(n in DAY_NAMES for n in names):
            raise ValueError(
                f"cannot read {part!r}: use day names {', '.join(DAY_NAMES)}, ranges such as "
                "mon-fri, comma-separated, or *"
            )
        a = DAY_NAMES.index(names[0])
        b = DAY_NAMES.index(names[-1])
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return tuple(sorted(days))


def _hhmm(value: str) -> int | None:
    """Minutes after midnight of ``HH:MM``, or None."""
    hh, sep, mm = value.strip().partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and 1 <= len(hh) <= 2):
        return None
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        return None
    return h * 60 + m


@dataclass(frozen=True)
class MaintenanceWindow:
    """One explicit maintenance interval ``[start, end)`` for the entities matching a glob.

    Parameters
    ----------
    entities
        Glob on the entity name, e.g. ``"db-*"`` (``"*"``: every entity).
    start, end
        ISO-8601 timestamps, e.g. ``"2026-01-03T02:00:00Z"`` (quote them in YAML: unquoted,
        YAML reads them as dates). Start inclusive, end exclusive; ``end > start``.
    """

    entities: str
    start: str
    end: str

    def __post_init__(self) -> None:
        problems: list[str] = []
        glob = glob_problem("entities", self.entities)
        if glob:
            problems.append(glob)
        start = _iso_ms("start", self.start, problems)
        end = _iso_ms("end", self.end, problems)
        if start is not None and end is not None and end <= start:
            problems.append(f"end ({self.end}) must be after start ({self.start})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def start_ms(self) -> int:
        """``start`` in UTC epoch milliseconds."""
        ts = parse_timestamp(self.start)
        assert ts is not None  # checked on init
        return ts

    @property
    def end_ms(self) -> int:
        """``end`` in UTC epoch milliseconds."""
        ts = parse_timestamp(self.end)
        assert ts is not None  # checked on init
        return ts


@dataclass(frozen=True)
class RecurringWindow:
    """A weekly maintenance window for the entities matching a glob.

    Parameters
    ----------
    entities
        Glob on the entity name.
    days
        Weekdays the window *starts* on: ``"mon,tue"``, ranges ``"mon-fri"`` (may wrap:
        ``"fri-mon"``) or ``"*"`` (every day).
    start
        Start time of day, ``"HH:MM"`` in UTC (quote it in YAML: unquoted, ``12:30`` is read
        as the base-60 number 750).
    minutes
        Length, 1 to 10080 (a week); the window may cross midnight and the end of the week.
    """

    entities: str
    days: str = "*"
    start: str = "00:00"
    minutes: int = 60

    def __post_init__(self) -> None:
        problems: list[str] = []
        glob = glob_problem("entities", self.entities)
        if glob:
            problems.append(glob)
        try:
            parse_days(str(self.days))
        except ValueError as exc:
            problems.append(f"days: {exc}")
        if _hhmm(str(self.start)) is None:
            hint = ""
            if str(self.start).isdigit():
                hint = " (YAML read an unquoted HH:MM as a number: quote it)"
            problems.append(f"start: expected 'HH:MM' in UTC, got {self.start!r}{hint}")
        if not (isinstance(self.minutes, int) and 1 <= self.minutes <= _WEEK_MINUTES):
            problems.append(f"minutes must be in [1, {_WEEK_MINUTES}], got {self.minutes!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def week_offsets_ms(self) -> tuple[int, ...]:
        """Start of each occurrence in ms after Monday 00:00 UTC."""
        start = _hhmm(self.start)
        assert start is not None
        return tuple(d * _DAY_MS + start * _MIN_MS for d in parse_days(self.days))


@dataclass(frozen=True)
class MaintenanceConfig:
    """Maintenance windows and what the detector does inside them.

    Parameters
    ----------
    windows
        Explicit intervals (:class:`MaintenanceWindow`).
    recurring
        Weekly windows (:class:`RecurringWindow`).
    learn
        Whether the entity's models learn from events inside a maintenance window. Alerts
        never open inside one.
    """

    windows: tuple[MaintenanceWindow, ...] = ()
    recurring: tuple[RecurringWindow, ...] = ()
    learn: bool = False


# One entity's applicable windows, compiled: explicit (start_ms, end_ms) intervals and
# recurring (offset into the week, duration) pairs, both in ms.
_Applicable = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
_NONE: _Applicable = ((), ())

# id(cfg) -> (cfg, {entity: applicable}). Holding ``cfg`` keeps its id from being reused, so
# this is a cache keyed by (cfg, entity) that does not rehash the configuration per event.
# Bounded: an entry forgets its entities past _MAX_ENTITIES, the cache its configurations
# past _MAX_CONFIGS (only speed depends on it, never a result).
_CACHE: dict[int, tuple[MaintenanceConfig, dict[str, _Applicable]]] = {}
_MAX_CONFIGS = 16
_MAX_ENTITIES = 100_000


def _applicable(cfg: MaintenanceConfig, entity: str) -> _Applicable:
    explicit = tuple((w.start_ms, w.end_ms) for w in cfg.windows if fnmatchcase(entity, w.entities))
    recurring = tuple(
        (offset, w.minutes * _MIN_MS)
        for w in cfg.recurring
        if fnmatchcase(entity, w.entities)
        for offset in w.week_offsets_ms()
    )
    if not explicit and not recurring:
        return _NONE
    return explicit, recurring


def in_maintenance(cfg: MaintenanceConfig, entity: str, ts_ms: int) -> bool:
    """Whether ``entity`` is inside one of its maintenance windows at ``ts_ms`` (UTC epoch ms).

    Start inclusive, end exclusive, for explicit and recurring windows alike.
    """
    if not cfg.windows and not cfg.recurring:
        return False
    entry = _CACHE.get(id(cfg))
    if entry is None or entry[0] is not cfg:
        if len(_CACHE) >= _MAX_CONFIGS:
            _CACHE.clear()
        entry = (cfg, {})
        _CACHE[id(cfg)] = entry
    by_entity = entry[1]
    app = by_entity.get(entity)
    if app is None:
        if len(by_entity) >= _MAX_ENTITIES:
            by_entity.clear()
        app = by_entity[entity] = _applicable(cfg, entity)
    explicit, recurring = app
    for start, end in explicit:
        if start <= ts_ms < end:
            return True
    if recurring:
        in_week = (ts_ms + _EPOCH_TO_MONDAY_MS) % _WEEK_MS
        for offset, length in recurring:
            if (in_week - offset) % _WEEK_MS < length:
                return True
    return False
