"""Episodes (udfs.core.alerts): one open per episode, escalate only on a new peak, one
resolved after the quiet period, cooldown and rate-limit suppressions counted and carried
on the next alert that gets out, and deterministic alert ids."""

from __future__ import annotations

from typing import Any

import pytest

from udfs.core.alerts import AlertConfig, EpisodeTracker, alert_id

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
INFO, WARNING, CRITICAL = 0, 1, 2

# Time-based resolution and a cooldown: the counting rule is off (quiet_events=0) here and
# has its own tests below.
CFG = AlertConfig(
    quiet_events=0, quiet_period_ms=10 * MIN, cooldown_ms=15 * MIN, max_alerts_per_hour=6
)


def run(tracker: EpisodeTracker, decisions: list[tuple[int, bool, int]]) -> list[dict[str, Any]]:
    """Feed ``(minute, anomalous, severity)`` decisions; return every record emitted."""
    out: list[dict[str, Any]] = []
    for minute, anomalous, severity in decisions:
        detail = {"score": 0.999, "marker": minute} if anomalous else {}
        out.extend(tracker.on_decision(T0 + minute * MIN, anomalous, severity, detail))
    return out


def kinds(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(kind, minute)`` of each record."""
    return [(r["kind"], (r["ts_ms"] - T0) // MIN) for r in records]


def normal(minutes: range) -> list[tuple[int, bool, int]]:
    return [(m, False, INFO) for m in minutes]


def test_persistent_anomaly_opens_once_escalates_on_new_peaks_and_resolves_once() -> None:
    decisions = [
        (0, True, INFO),
        (1, True, INFO),  # repeat: nothing
        (2, True, WARNING),  # rises: escalate
        (3, True, WARNING),  # repeat: nothing
        (4, True, INFO),  # falls: nothing
        (5, True, CRITICAL),  # rises: escalate
        (6, True, WARNING),  # falls: nothing
        *normal(range(7, 40)),
    ]
    out = run(EpisodeTracker(CFG, "srv-1"), decisions)
    # Last anomalous event at minute 6, quiet period 10 minutes: resolved at minute 16.
    assert kinds(out) == [("open", 0), ("escalate", 2), ("escalate", 5), ("resolved", 16)]
    assert [r["severity"] for r in out] == ["info", "warning", "critical", "critical"]
    assert len({r["alert_id"] for r in out}) == 1
    assert all(r["start_ts"] == "2026-01-01T00:00:00.000Z" for r in out)
    assert [r.get("marker") for r in out] == [0, 2, 5, 5]  # resolved carries the peak


def test_episode_stays_open_while_anomalies_keep_coming_within_the_quiet_period() -> None:
    # Anomalous every 9 minutes (< 10): one long episode, no resolve in between.
    decisions = []
    for m in range(0, 60):
        decisions.append((m, m % 9 == 0, INFO))
    out = run(EpisodeTracker(CFG, "srv-1"), decisions)
    assert kinds(out) == [("open", 0)]


def test_resolve_needs_the_full_quiet_period() -> None:
    tracker = EpisodeTracker(CFG, "srv-1")
    out = run(tracker, [(0, True, INFO), *normal(range(1, 10))])
    assert kinds(out) == [("open", 0)] and tracker.open
    out = run(tracker, normal(range(10, 11)))
    assert kinds(out) == [("resolved", 10)] and not tracker.open


def test_flapping_inside_cooldown_is_suppressed_counted_and_carried_once() -> None:
    tracker = EpisodeTracker(CFG, "srv-1")
    decisions = [
        (0, True, INFO),
        *normal(range(1, 10)),
        (10, False, INFO),  # resolves (quiet since minute 0): cooldown until minute 25
        (12, True, INFO),
        (13, False, INFO),
        (16, True, INFO),
        (20, True, INFO),
        (24, True, INFO),  # 4 suppressed, all inside the cooldown
        (25, True, INFO),  # cooldown over: opens, carrying the count
        (26, True, WARNING),  # escalate: the count has been reset
    ]
    out = run(tracker, decisions)
    assert kinds(out) == [("open", 0), ("resolved", 10), ("open", 25), ("escalate", 26)]
    assert [r["suppressed_before"] for r in out] == [0, 0, 4, 0]
    assert out[2]["alert_id"] != out[0]["alert_id"]
    assert tracker.suppressed == 0


def test_a_higher_severity_than_the_last_peak_opens_inside_the_cooldown() -> None:
    tracker = EpisodeTracker(CFG, "srv-1")
    decisions = [
        (0, True, WARNING),
        *normal(range(1, 10)),
        (10, False, INFO),  # resolves at peak warning: cooldown until minute 25
        (12, True, INFO),  # lower: suppressed
        (13, True, WARNING),  # the same: suppressed
        (16, True, CRITICAL),  # worse: opens, carrying the 2 suppressed
    ]
    out = run(tracker, decisions)
    assert kinds(out) == [("open", 0), ("resolved", 10), ("open", 16)]
    assert out[2]["severity"] == "critical"
    assert out[2]["suppressed_before"] == 2


def test_suppressions_are_reported_by_the_next_open_even_after_a_long_wait() -> None:
    cfg = AlertConfig(quiet_events=0, quiet_period_ms=2 * MIN, cooldown_ms=30 * MIN)
    tracker = EpisodeTracker(cfg, "srv-1")
    out = run(
        tracker,
        [
            (0, True, INFO),
            (2, False, INFO),  # resolved, cooldown until 32
            (3, True, INFO),  # suppressed (1)
            (4, True, INFO),  # suppressed (2)
            (40, True, INFO),  # opens with 2 before it
            (42, False, INFO),  # resolved
        ],
    )
    assert kinds(out) == [("open", 0), ("resolved", 2), ("open", 40), ("resolved", 42)]
    assert [r["suppressed_before"] for r in out] == [0, 0, 2, 0]


def test_open_records_are_rate_limited_per_hour_and_the_excess_counted() -> None:
    cfg = AlertConfig(quiet_events=0, quiet_period_ms=MIN, cooldown_ms=0, max_alerts_per_hour=2)
    tracker = EpisodeTracker(cfg, "srv-1")
    # An anomaly every other minute, each a new episode (quiet period 1 minute, no cooldown).
    decisions = [(m, m % 2 == 0, INFO) for m in range(0, 62)]
    out = run(tracker, decisions)
    opens = [r for r in out if r["kind"] == "open"]
    assert [(r["ts_ms"] - T0) // MIN for r in opens] == [0, 2, 60]
    # Minutes 4, 6, ..., 58 wanted to open: 28 suppressed, reported by the open at 60.
    assert [r["suppressed_before"] for r in opens] == [0, 0, 28]


def test_rate_limit_does_not_count_escalations() -> None:
    cfg = AlertConfig(quiet_period_ms=10 * MIN, cooldown_ms=0, max_alerts_per_hour=1)
    tracker = EpisodeTracker(cfg, "srv-1")
    out = run(tracker, [(0, True, INFO), (1, True, WARNING), (2, True, CRITICAL)])
    assert kinds(out) == [("open", 0), ("escalate", 1), ("escalate", 2)]


def test_alert_id_depends_only_on_entity_and_episode_start() -> None:
    a = EpisodeTracker(CFG, "srv-1")
    b = EpisodeTracker(AlertConfig(quiet_period_ms=MIN, cooldown_ms=0), "srv-1")
    first_a = run(a, [(5, True, INFO)])[0]
    # Another tracker, another config, another severity and body: same entity and start.
    first_b = b.on_decision(T0 + 5 * MIN, True, CRITICAL, {"score": 0.5})[0]
    assert first_a["alert_id"] == first_b["alert_id"] == alert_id("srv-1", T0 + 5 * MIN)
    assert alert_id("srv-1", T0 + 5 * MIN) != alert_id("srv-1", T0 + 6 * MIN)
    assert alert_id("srv-1", T0 + 5 * MIN) != alert_id("srv-2", T0 + 5 * MIN)
    assert len(first_a["alert_id"]) == 16
    int(first_a["alert_id"], 16)  # hexadecimal


def test_url_templates_are_filled_with_entity_id_and_timestamps() -> None:
    cfg = AlertConfig(
        quiet_period_ms=10 * MIN,
        runbook_url="https://rb.example/{entity}/{alert_id}",
        dashboard_url="https://dash.example/?e={entity}&from={start_ts}&at={ts}",
    )
    out = run(EpisodeTracker(cfg, "db-1"), [(0, True, INFO), (3, True, CRITICAL)])
    aid = alert_id("db-1", T0)
    assert out[0]["runbook_url"] == f"https://rb.example/db-1/{aid}"
    assert out[0]["dashboard_url"] == (
        "https://dash.example/?e=db-1&from=2026-01-01T00:00:00.000Z&at=2026-01-01T00:00:00.000Z"
    )
    assert out[1]["dashboard_url"] == (
        "https://dash.example/?e=db-1&from=2026-01-01T00:00:00.000Z&at=2026-01-01T00:03:00.000Z"
    )


def test_tracker_snapshot_restore_continues_the_episode() -> None:
    decisions = [(0, True, INFO), (1, True, WARNING), (3, False, INFO), (5, True, CRITICAL)]
    decisions += normal(range(6, 20)) + [(21, True, INFO), (40, True, INFO)]
    whole = run(EpisodeTracker(CFG, "srv-1"), decisions)
    first = EpisodeTracker(CFG, "srv-1")
    out = run(first, decisions[:4])
    second = EpisodeTracker(CFG, "srv-1")
    second.restore(first.snapshot())
    out += run(second, decisions[4:])
    assert out == whole


@pytest.mark.parametrize(
    ("field", "value"),
    [("quiet_period_ms", -1), ("cooldown_ms", -1), ("max_alerts_per_hour", 0), ("top_features", 0)],
)
def test_alert_config_rejects_bad_values_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        AlertConfig(**{field: value})


def test_an_episode_resolves_after_quiet_events_normal_events_whatever_their_spacing() -> None:
    cfg = AlertConfig(quiet_events=3, quiet_period_ms=0, cooldown_ms=0)
    # Events every minute, then every hour: the count, not the clock, decides.
    for step in (1, 60):
        decisions = [(0, True, INFO), (step, True, INFO)]
        decisions += [(step * k, False, INFO) for k in range(2, 8)]
        out = run(EpisodeTracker(cfg, "srv-1"), decisions)
        # Three normal events (k = 2, 3, 4) after the last anomalous one; resolved on the next.
        assert kinds(out) == [("open", 0), ("resolved", 5 * step)]


def test_an_anomalous_event_restarts_the_quiet_count() -> None:
    cfg = AlertConfig(quiet_events=3, quiet_period_ms=0, cooldown_ms=0)
    decisions = [(0, True, INFO), (1, False, INFO), (2, False, INFO), (3, True, INFO)]
    decisions += normal(range(4, 10))
    out = run(EpisodeTracker(cfg, "srv-1"), decisions)
    assert kinds(out) == [("open", 0), ("resolved", 7)]


def test_both_the_count_and_the_quiet_period_must_pass() -> None:
    cfg = AlertConfig(quiet_events=2, quiet_period_ms=10 * MIN, cooldown_ms=0)
    out = run(EpisodeTracker(cfg, "srv-1"), [(0, True, INFO), *normal(range(1, 20))])
    assert kinds(out) == [("open", 0), ("resolved", 10)]
    out = run(EpisodeTracker(cfg, "srv-1"), [(0, True, INFO), (30, False, INFO), (31, False, INFO), (32, False, INFO)])
    assert kinds(out) == [("open", 0), ("resolved", 32)]


def test_a_snapshot_from_before_the_quiet_count_resolves_by_time_alone() -> None:
    cfg = AlertConfig(quiet_events=12, quiet_period_ms=10 * MIN, cooldown_ms=0)
    a = EpisodeTracker(cfg, "srv-1")
    run(a, [(0, True, INFO)])
    old = a.snapshot()[:12]  # the 12-field snapshot of an older release
    b = EpisodeTracker(cfg, "srv-1")
    b.restore(old)
    assert kinds(run(b, normal(range(1, 12)))) == [("resolved", 10)]
