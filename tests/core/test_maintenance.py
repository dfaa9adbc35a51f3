"""Maintenance windows (udfs.core.maintenance): explicit and weekly windows matched by entity
glob, start inclusive and end exclusive, across midnight and the end of the week, equal to a
datetime-based reference at random instants, and configuration errors that name the field."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import pytest
import yaml

from job.config import _build
from udfs.core.events import parse_timestamp
from udfs.core.maintenance import (
    MaintenanceConfig,
    MaintenanceWindow,
    RecurringWindow,
    in_maintenance,
    parse_days,
)

MIN = 60_000


def ts(text: str) -> int:
    value = parse_timestamp(text)
    assert value is not None
    return value


# 2026-01-05 is a Monday.
MON = "2026-01-05"
TUE = "2026-01-06"
SAT = "2026-01-10"
SUN = "2026-01-11"
NEXT_MON = "2026-01-12"


def test_nothing_configured_is_never_maintenance() -> None:
    assert not in_maintenance(MaintenanceConfig(), "srv-1", ts(f"{MON}T00:00:00Z"))
    assert MaintenanceConfig().learn is False


def test_explicit_window_includes_its_start_and_excludes_its_end() -> None:
    cfg = MaintenanceConfig(
        windows=(MaintenanceWindow("db-*", "2026-01-03T02:00:00Z", "2026-01-03T03:00:00Z"),)
    )
    start, end = ts("2026-01-03T02:00:00Z"), ts("2026-01-03T03:00:00Z")
    assert [in_maintenance(cfg, "db-1", t) for t in (start - 1, start, end - 1, end)] == [
        False,
        True,
        True,
        False,
    ]
    assert not in_maintenance(cfg, "srv-1", start)  # glob: db-* only


def test_explicit_window_reads_offsets_and_naive_times_as_utc() -> None:
    cfg = MaintenanceConfig(
        windows=(
            MaintenanceWindow("a", "2026-01-03T04:00:00+02:00", "2026-01-03T05:00:00+02:00"),
            MaintenanceWindow("b", "2026-01-03T02:00:00", "1767409200000"),  # epoch ms: 03:00Z
        )
    )
    assert in_maintenance(cfg, "a", ts("2026-01-03T02:30:00Z"))
    assert not in_maintenance(cfg, "a", ts("2026-01-03T04:30:00Z"))
    assert in_maintenance(cfg, "b", ts("2026-01-03T02:59:59.999Z"))
    assert not in_maintenance(cfg, "b", ts("2026-01-03T03:00:00Z"))


def test_recurring_window_includes_its_start_and_excludes_its_end() -> None:
    cfg = MaintenanceConfig(recurring=(RecurringWindow("*", days="*", start="02:00", minutes=30),))
    start = ts(f"{TUE}T02:00:00Z")
    assert [in_maintenance(cfg, "x", t) for t in (start - 1, start, start + 30 * MIN - 1)] == [
        False,
        True,
        True,
    ]
    assert not in_maintenance(cfg, "x", start + 30 * MIN)


def test_recurring_window_crosses_midnight_into_the_next_day() -> None:
    cfg = MaintenanceConfig(recurring=(RecurringWindow("srv-*", "mon", "23:30", 60),))
    assert in_maintenance(cfg, "srv-1", ts(f"{MON}T23:30:00Z"))
    assert in_maintenance(cfg, "srv-1", ts(f"{TUE}T00:29:59.999Z"))
    assert not in_maintenance(cfg, "srv-1", ts(f"{TUE}T00:30:00Z"))
    assert not in_maintenance(cfg, "srv-1", ts(f"{TUE}T23:45:00Z"))  # starts on Mondays only
    assert not in_maintenance(cfg, "srv-1", ts(f"{MON}T00:15:00Z"))  # Sunday did not start one


def test_recurring_window_wraps_over_the_end_of_the_week() -> None:
    cfg = MaintenanceConfig(recurring=(RecurringWindow("*", "sun", "23:00", 120),))
    assert in_maintenance(cfg, "e", ts(f"{SUN}T23:00:00Z"))
    assert in_maintenance(cfg, "e", ts(f"{NEXT_MON}T00:59:59.999Z"))
    assert not in_maintenance(cfg, "e", ts(f"{NEXT_MON}T01:00:00Z"))
    assert in_maintenance(cfg, "e", ts(f"{MON}T00:30:00Z"))  # from the Sunday before
    assert not in_maintenance(cfg, "e", ts(f"{SAT}T23:30:00Z"))


def test_a_week_long_recurring_window_covers_every_instant() -> None:
    cfg = MaintenanceConfig(recurring=(RecurringWindow("*", "wed", "12:00", 7 * 1440),))
    rng = random.Random(1)
    assert all(
        in_maintenance(cfg, "e", rng.randrange(ts("2026-01-01"), ts("2027-01-01")))
        for _ in range(200)
    )


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("*", (0, 1, 2, 3, 4, 5, 6)),
        ("mon", (0,)),
        ("mon,wed,fri", (0, 2, 4)),
        ("Mon - Fri", (0, 1, 2, 3, 4)),
        ("fri-mon", (0, 4, 5, 6)),
        ("sat,sun,sat", (5, 6)),
        ("tue-tue", (1,)),
    ],
)
def test_day_lists_and_ranges(text: str, days: tuple[int, ...]) -> None:
    assert parse_days(text) == days


def _reference(cfg: MaintenanceConfig, entity: str, ts_ms: int) -> bool:
    """Every occurrence of every window, enumerated with datetime around ``ts_ms``."""
    t = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    for w in cfg.windows:
        if fnmatchcase(entity, w.entities) and w.start_ms <= ts_ms < w.end_ms:
            return True
    for r in cfg.recurring:
        if not fnmatchcase(entity, r.entities):
            continue
        hh, mm = map(int, r.start.split(":"))
        for back in range(0, 9):  # occurrences starting up to 8 days before t
            day = (t - timedelta(days=back)).replace(hour=hh, minute=mm, second=0, microsecond=0)
            if day.weekday() not in parse_days(r.days):
                continue
            if day <= t < day + timedelta(minutes=r.minutes):
                return True
    return False


def test_matches_a_datetime_reference_at_random_instants() -> None:
    cfg = MaintenanceConfig(
        windows=(
            MaintenanceWindow("db-*", "2026-03-01T00:00:00Z", "2026-03-02T12:00:00Z"),
            MaintenanceWindow("*-2", "2026-02-10T10:15:00Z", "2026-02-10T10:16:00Z"),
        ),
        recurring=(
            RecurringWindow("srv-*", "mon-fri", "23:45", 30),
            RecurringWindow("db-*", "sat,sun", "22:00", 300),
            RecurringWindow("*", "fri-mon", "06:10", 1440 + 7),
            RecurringWindow("edge-?", "sun", "23:59", 2),
        ),
    )
    rng = random.Random(7)
    lo, hi = ts("2026-01-01"), ts("2026-04-01")
    instants = [rng.randrange(lo, hi) for _ in range(1_500)]
    # and the edges of every occurrence, where off-by-one mistakes live
    for day in range(7, 21):
        base = ts("2026-01-01") + day * 86_400_000
        for hm in (23 * 60 + 45, 22 * 60, 6 * 60 + 10, 23 * 60 + 59):
            for end in (0, 30, 300, 1447, 2):
                t = base + (hm + end) * MIN
                instants += [t - 1, t, t + 1]
    entities = ["srv-1", "srv-2", "db-1", "edge-1", "edge-10", "other"]
    for t in instants:
        for e in entities:
            assert in_maintenance(cfg, e, t) is _reference(cfg, e, t), (e, t)


def test_invalid_windows_report_every_problem_naming_the_field() -> None:
    with pytest.raises(ValueError) as info:
        MaintenanceWindow("", "tomorrow", "2026-01-03T03:00:00Z")
    msg = str(info.value)
    assert "entities must be a non-empty glob, got ''" in msg
    assert "start: expected an ISO-8601 timestamp such as '2026-01-03T02:00:00Z'" in msg
    assert "got 'tomorrow'" in msg
    with pytest.raises(ValueError, match=r"end \(2026-01-03T02:00:00Z\) must be after start"):
        MaintenanceWindow("*", "2026-01-03T02:00:00Z", "2026-01-03T02:00:00Z")
    with pytest.raises(ValueError) as info:
        RecurringWindow("*", days="mon,funday", start="24:00", minutes=0)
    msg = str(info.value)
    assert "days: cannot read 'funday'" in msg
    assert "start: expected 'HH:MM' in UTC, got '24:00'" in msg
    assert "minutes must be in [1, 10080], got 0" in msg


def test_loads_from_yaml_and_explains_an_unquoted_time() -> None:
    data: Any = yaml.safe_load(
        """
        windows:
          - {entities: "db-*", start: "2026-01-03T02:00:00Z", end: "2026-01-03T03:00:00Z"}
        recurring:
          - {entities: "srv-*", days: "sat,sun", start: "02:00", minutes: 90}
        learn: true
        """
    )
    problems: list[str] = []
    cfg = _build(MaintenanceConfig, data, "detector.maintenance", problems)
    assert problems == []
    assert cfg == MaintenanceConfig(
        windows=(MaintenanceWindow("db-*", "2026-01-03T02:00:00Z", "2026-01-03T03:00:00Z"),),
        recurring=(RecurringWindow("srv-*", "sat,sun", "02:00", 90),),
        learn=True,
    )
    # YAML 1.1 reads an unquoted 12:30 as the base-60 integer 750; the loader makes it "750".
    bad: Any = yaml.safe_load("recurring: [{entities: x, start: 12:30}]")
    _build(MaintenanceConfig, bad, "m", problems)
    assert problems == [
        "m.recurring[0]: start: expected 'HH:MM' in UTC, got '750' "
        "(YAML read an unquoted HH:MM as a number: quote it)"
    ]
