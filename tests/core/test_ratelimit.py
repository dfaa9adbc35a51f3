"""Global rate limit (udfs.core.ratelimit): at most N alerts in any sliding hour of event time,
window (now - 1 h, now], suppressions counted, equal to a brute-force reference, and a
restore half way continuing exactly like an uninterrupted run."""

from __future__ import annotations

import random

import pytest

from state.codec import decode, encode
from udfs.core.ratelimit import (
    HOUR_MS,
    GlobalAlertGate,
    GlobalRateLimiter,
    alert_order,
    gate_alerts,
)

T0 = 1_767_225_600_000
MIN = 60_000


def test_allows_up_to_the_cap_per_sliding_hour() -> None:
    lim = GlobalRateLimiter(3)
    minutes = [0, 1, 2, 3, 30, 59, 60, 61, 62, 63, 120]
    got = [lim.allow(T0 + m * MIN) for m in minutes]
    assert got == [True, True, True, False, False, False, True, True, True, False, True]
    assert lim.suppressed == 4


def test_an_alert_exactly_one_hour_later_frees_the_slot() -> None:
    lim = GlobalRateLimiter(1)
    assert lim.allow(T0)
    assert not lim.allow(T0 + HOUR_MS - 1)  # T0 is still in (now - 1 h, now]
    assert lim.allow(T0 + HOUR_MS)  # T0 has left the window


def test_an_older_alert_is_judged_against_the_current_window() -> None:
    lim = GlobalRateLimiter(2)
    assert lim.allow(T0 + 50 * MIN)
    assert lim.allow(T0 + 10 * MIN)  # out of order, inside the window ending at minute 50
    assert not lim.allow(T0 + 5 * MIN)  # full
    # now is still minute 50; at minute 70 the alert of minute 10 has left the window.
    assert lim.allow(T0 + 70 * MIN)
    assert not lim.allow(T0 + 71 * MIN)


def test_suppressions_since_the_last_alert_out_are_counted_apart() -> None:
    lim = GlobalRateLimiter(1)
    lim.allow(T0)
    lim.allow(T0 + MIN)
    lim.allow(T0 + 2 * MIN)
    assert (lim.suppressed, lim.suppressed_since_allowed) == (2, 2)
    lim.allow(T0 + 61 * MIN)
    assert (lim.suppressed, lim.suppressed_since_allowed) == (2, 0)


def _reference(timestamps: list[int], cap: int) -> list[bool]:
    """Allowed iff fewer than ``cap`` allowed alerts lie in (t - 1 h, t], t sorted."""
    allowed: list[int] = []
    out = []
    for t in timestamps:
        ok = sum(1 for a in allowed if t - HOUR_MS < a <= t) < cap
        if ok:
            allowed.append(t)
        out.append(ok)
    return out


def test_matches_a_brute_force_sliding_window_on_ordered_bursts() -> None:
    rng = random.Random(11)
    t = T0
    stream = []
    for _ in range(1_500):
        t += rng.choice([0, 1, 1_000, 30_000, 5 * MIN, 40 * MIN])  # ties, bursts, gaps
        stream.append(t)
    for cap in (1, 3, 10):
        lim = GlobalRateLimiter(cap)
        got = [lim.allow(x) for x in stream]
        assert got == _reference(stream, cap)
        assert lim.suppressed == got.count(False)
        allowed = [x for x, ok in zip(stream, got, strict=True) if ok]
        # no hour (t - 1 h, t] ever holds more than cap allowed alerts
        assert all(sum(1 for a in allowed if x - HOUR_MS < a <= x) <= cap for x in allowed)


def test_restore_half_way_continues_like_an_uninterrupted_run() -> None:
    rng = random.Random(3)
    stream = [T0 + rng.randrange(0, 6 * HOUR_MS) for _ in range(400)]  # unordered too
    whole = GlobalRateLimiter(5)
    expected = [whole.allow(x) for x in stream]
    first = GlobalRateLimiter(5)
    got = [first.allow(x) for x in stream[:200]]
    resumed = GlobalRateLimiter(5)
    resumed.restore(decode(encode(first.snapshot())))
    got += [resumed.allow(x) for x in stream[200:]]
    assert got == expected
    assert resumed.snapshot() == whole.snapshot()
    assert len(whole.snapshot()[1]) <= 5  # memory: at most the cap of timestamps


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_rejects_a_cap_that_is_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_per_hour must be an integer >= 1"):
        GlobalRateLimiter(bad)  # type: ignore[arg-type]


# -- the gate over alert records -----------------------------------------------------------


def _episode(entity: str, start_min: int, escalate: bool = False) -> list[dict[str, object]]:
    aid = f"{entity}-{start_min}"
    recs = [{"kind": "open", "alert_id": aid, "entity": entity, "ts_ms": start_min * 60_000}]
    if escalate:
        recs.append({**recs[0], "kind": "escalate", "ts_ms": (start_min + 2) * 60_000})
    recs.append({**recs[0], "kind": "resolved", "ts_ms": (start_min + 15) * 60_000})
    return recs


def test_gate_holds_whole_episodes_back_and_counts_them_on_the_next_alert_out() -> None:
    # A storm: 8 entities open within 5 minutes, cap 3 per hour; a lone alert 2 h later.
    recs = [r for i in range(8) for r in _episode(f"e{i}", i // 2, escalate=i == 6)]
    recs += _episode("late", 125)
    out = gate_alerts([("alert", r) for r in recs], 3)
    alerts = [r for k, r in out if k == "alert"]
    storms = [r for k, r in out if k == "drift"]
    opened = [r["alert_id"] for r in alerts if r["kind"] == "open"]
    assert opened == ["e0-0", "e1-0", "e2-1", "late-125"]
    # No escalation or resolution of an episode nobody saw; every held-back record counted.
    assert {r["alert_id"] for r in alerts} == set(opened)
    held_back = len(recs) - len(alerts)
    assert held_back == 5 * 2 + 1  # 5 suppressed episodes, one with an escalation
    assert sum(int(r.get("suppressed_global", 0)) for r in alerts) == held_back
    assert len(storms) == 1 and storms[0]["check"] == "alert_storm"
    assert storms[0]["first_suppressed"] == "e3-1"


def test_gate_decisions_do_not_depend_on_the_arrival_order() -> None:
    rng = random.Random(4)
    recs = [
        r for i in range(40) for r in _episode(f"e{i}", rng.randrange(0, 300), escalate=i % 3 == 0)
    ]
    first = gate_alerts([("alert", r) for r in recs], 5)
    for _ in range(5):
        rng.shuffle(recs)
        assert gate_alerts([("alert", r) for r in recs], 5) == first


def test_gate_restored_half_way_decides_like_an_uninterrupted_one() -> None:
    recs = sorted(
        (r for i in range(30) for r in _episode(f"e{i}", (i * 7) % 200, escalate=i % 2 == 0)),
        key=alert_order,
    )
    whole = GlobalAlertGate(4)
    a = [o for r in recs for o in whole.decide(r)]
    first = GlobalAlertGate(4)
    b = [o for r in recs[:31] for o in first.decide(r)]
    second = GlobalAlertGate(4)
    second.restore(first.snapshot())
    b += [o for r in recs[31:] for o in second.decide(r)]
    assert a == b
