"""Stale entities (udfs.core.staleness and the detector's use of it): the cadence estimate
equals a batch median at every step, the silence threshold is exact at its boundaries, one
``stale_entity`` record per silence (before the idle expiry) and one ``entity_returned``,
and the watermark path (Flink's timer) and the next-event path (the replay) give the same
records wherever the watermarks fall."""

from __future__ import annotations

import dataclasses
import random
import statistics
from typing import Any

import pytest

from state.codec import decode, encode
from tests.outputs import one_nan
from udfs.core.config import DetectorConfig, LatenessConfig, ModelConfig
from udfs.core.detector import EntityDetector, Output
from udfs.core.events import Event
from udfs.core.features import FeatureConfig, WindowSpec
from udfs.core.replay import replay
from udfs.core.staleness import InterArrival, StalenessConfig, silence_threshold_ms

T0 = 1_767_225_600_000
SEC = 1_000
MIN = 60 * SEC
TTL = 3_600_000  # 1 h: the threshold is capped at 30 min
STALE = StalenessConfig(min_silence_ms=5 * MIN, gap_factor=20.0, gap_samples=8)
CFG = DetectorConfig(
    lateness=LatenessConfig(max_out_of_orderness_ms=2 * SEC, idle_ttl_ms=TTL),
    features=FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 5), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(),
        robust_windows=(),
        max_gap_ms=30_000,
        min_count=3,
    ),
    model=ModelConfig(ensemble=("window",), min_calibration_events=10),
    staleness=STALE,
)


def events_at(offsets_ms: list[int], entity: str = "e") -> list[Event]:
    return [Event(entity, T0 + t, {"v": float(i % 7)}) for i, t in enumerate(offsets_ms)]


def every(step_ms: int, n: int, start_ms: int = 0) -> list[int]:
    return [start_ms + i * step_ms for i in range(n)]


def health(outputs: list[Output]) -> list[tuple[str, int, Any, Any]]:
    """``(check, ts_ms, value, threshold)`` of the staleness records, in order."""
    return [
        (r["check"], r["ts_ms"], r["value"], r["threshold"])
        for kind, r in outputs
        if kind == "drift" and r.get("check") in ("stale_entity", "entity_returned")
    ]


def run(events: list[Event], cfg: DetectorConfig = CFG) -> list[Output]:
    return one_nan(list(replay(events, cfg)))


# -- the estimator and the threshold ---------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 2, 7, 16])
def test_inter_arrival_is_the_lower_median_of_the_latest_gaps_at_every_step(samples: int) -> None:
    rng = random.Random(samples)
    ia = InterArrival(samples)
    gaps: list[int] = []
    for _ in range(300):
        gap = rng.choice([rng.randrange(0, 50), rng.randrange(0, 100_000)])
        ia.update(gap)
        gaps.append(gap)
        assert ia.get() == statistics.median_low(gaps[-samples:])
        assert ia.snapshot() == tuple(gaps[-samples:])
    restored = InterArrival.restore(samples, ia.snapshot())
    assert restored.get() == ia.get() and restored.snapshot() == ia.snapshot()
    assert InterArrival.restore(1, ia.snapshot()).snapshot() == (gaps[-1],)


def test_silence_threshold_is_floored_relative_and_capped_at_half_the_ttl() -> None:
    assert silence_threshold_ms(STALE, 10 * SEC, TTL) == 5 * MIN  # floor: 200 s < 5 min
    assert silence_threshold_ms(STALE, 15 * SEC + 1, TTL) == 300_020  # 20 * 15001
    assert silence_threshold_ms(STALE, 2 * MIN, TTL) == 30 * MIN  # 40 min, capped at TTL / 2
    odd = dataclasses.replace(STALE, gap_factor=2.5)
    assert silence_threshold_ms(odd, 200_001, TTL) == 500_003  # ceil(500002.5)


def test_staleness_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as err:
        StalenessConfig(enabled=1, min_silence_ms=0, gap_factor=0.0, gap_samples=0)  # type: ignore[arg-type]
    assert str(err.value) == (
        "enabled must be a bool, got 1; min_silence_ms must be an int >= 1, got 0; "
        "gap_factor must be > 0, got 0.0; gap_samples must be an int in [1, 1024], got 0"
    )


# -- the detector ----------------------------------------------------------------------------


def test_silent_entity_is_reported_once_at_its_deadline_and_when_it_returns() -> None:
    # Every 10 s for 5 minutes, silent for 20 minutes, then every 10 s again.
    before = every(10 * SEC, 31)
    last = before[-1]
    back = last + 20 * MIN
    out = run(events_at(before + every(10 * SEC, 10, back)))
    assert health(out) == [
        ("stale_entity", T0 + last + 5 * MIN, 5 * MIN, 5 * MIN),  # 20 x 10 s < the 5 min floor
        ("entity_returned", T0 + back, 20 * MIN, 5 * MIN),
        # end of input: the final watermark says no event will come
        ("stale_entity", T0 + back + 90 * SEC + 5 * MIN, 5 * MIN, 5 * MIN),
    ]
    stale = next(r for k, r in out if k == "drift")
    assert stale == {
        "type": "health",
        "check": "stale_entity",
        "value": 5 * MIN,
        "threshold": 5 * MIN,
        "silence_ms": 5 * MIN,
        "expected_interval_ms": 10 * SEC,
        "last_seen_ts": "2026-01-01T00:05:00.000Z",
        "last_seen_ts_ms": T0 + last,
        "current": {"from_ts": T0 + last, "to_ts": T0 + last + 5 * MIN, "events": 0},
        "entity": "e",
        "ts": "2026-01-01T00:10:00.000Z",
        "ts_ms": T0 + last + 5 * MIN,
        "config_version": "1",
    }


def test_the_threshold_follows_the_entitys_own_cadence() -> None:
    # Every 30 s: 20 x 30 s = 10 min. A 9-minute pause is not stale, an 11-minute one is.
    before = every(30 * SEC, 20)
    last = before[-1]
    out = run(events_at(before + [last + 9 * MIN, last + 9 * MIN + 11 * MIN + 30 * SEC]))
    assert health(out)[:2] == [
        ("stale_entity", T0 + last + 9 * MIN + 10 * MIN, 10 * MIN, 10 * MIN),
        ("entity_returned", T0 + last + 20 * MIN + 30 * SEC, 11 * MIN + 30 * SEC, 10 * MIN),
    ]


def test_an_event_exactly_at_the_deadline_is_not_a_silence_one_ms_later_is() -> None:
    before = every(10 * SEC, 10)
    deadline = before[-1] + 5 * MIN
    on_time = run(events_at([*before, deadline]))
    late = run(events_at([*before, deadline + 1]))
    assert [h[0] for h in health(on_time)] == ["stale_entity"]  # only the end of input's
    assert health(on_time)[0][1] == T0 + deadline + 5 * MIN
    assert [h[:2] for h in health(late)][:2] == [
        ("stale_entity", T0 + deadline),
        ("entity_returned", T0 + deadline + 1),
    ]


def test_an_entity_with_a_single_event_or_with_staleness_off_is_never_stale() -> None:
    assert health(run(events_at([0]))) == []
    off = dataclasses.replace(CFG, staleness=dataclasses.replace(STALE, enabled=False))
    events = events_at(every(10 * SEC, 10) + [TTL // 2])
    assert health(run(events, off)) == []
    det = EntityDetector("e", off)
    for ev in events:
        det.on_event(ev)
    assert det.stale_deadline_ms() is None


def test_stale_comes_before_the_idle_expiry_and_an_expired_entity_returns_fresh() -> None:
    before = every(10 * SEC, 10)
    last = before[-1]
    after = every(10 * SEC, 10, last + TTL + SEC)
    out = run(events_at(before + after))
    # Stale at the deadline, no entity_returned (its state was gone), stale again at the end.
    assert [h[:2] for h in health(out)] == [
        ("stale_entity", T0 + last + 5 * MIN),
        ("stale_entity", T0 + after[-1] + 5 * MIN),
    ]


def test_watermarks_anywhere_give_the_records_of_the_replay() -> None:
    """Flink's path (a watermark past the deadline) and the replay's (the next event after
    it) agree, whatever the watermarks: same records, same order, once per silence."""
    rng = random.Random(4)
    offsets: list[int] = []
    t = 0
    for _ in range(400):
        t += rng.choice([10 * SEC] * 8 + [rng.randrange(1, TTL + 5 * MIN)])
        offsets.append(t)
    events = events_at(offsets)
    expected = run(events)
    assert sum(1 for h in health(expected) if h[0] == "entity_returned") > 5
    by_watermark = 0
    for trial in range(20):
        det = EntityDetector("e", CFG)
        got: list[Output] = []
        wm = -(1 << 62)
        for ev in events:
            got += det.on_event(ev)
            if rng.random() < 0.3:
                # A watermark between the last one and the newest timestamp (minus the bound).
                bound = CFG.lateness.max_out_of_orderness_ms
                wm = max(wm, rng.randrange(ev.ts_ms - TTL, ev.ts_ms - bound))
                released = det.on_watermark(wm)
                by_watermark += len(health(released))
                got += released
        got += det.flush()
        got = one_nan(got)
        assert health(got) == health(expected), trial
        assert [r for k, r in got if k == "score"] == [r for k, r in expected if k == "score"]
    assert by_watermark > 0  # the timer's path was taken, not only the next event's


def test_a_restore_mid_silence_continues_with_one_record_per_silence() -> None:
    before = every(10 * SEC, 10)
    det = EntityDetector("e", CFG)
    out: list[Output] = []
    for ev in events_at(before):
        out += det.on_event(ev)
    out += det.on_watermark(T0 + before[-1] + 6 * MIN)  # reports the stale entity
    restored = EntityDetector.restore("e", CFG, decode(encode(det.snapshot())))
    assert restored.stale_deadline_ms() is None  # already reported for this silence
    out += restored.on_event(events_at([before[-1] + 10 * MIN])[0])
    out += restored.on_watermark(T0 + before[-1] + 11 * MIN)
    assert [h[0] for h in health(out)] == ["stale_entity", "entity_returned"]


def test_a_silence_inside_a_maintenance_window_is_marked_like_alerts() -> None:
    from udfs.core.maintenance import MaintenanceConfig, MaintenanceWindow

    before = every(10 * SEC, 10)
    back = before[-1] + 20 * MIN
    cfg = dataclasses.replace(
        CFG,
        maintenance=MaintenanceConfig(
            windows=(MaintenanceWindow("e", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"),)
        ),
    )
    recs = [r for k, r in run(events_at(before + [back]), cfg) if k == "drift"]
    # stale at 00:06:30 (in the window), returned at 00:21:30 and stale at the end (outside)
    assert [(r["check"], r.get("maintenance", False)) for r in recs] == [
        ("stale_entity", True),
        ("entity_returned", False),
        ("stale_entity", False),
    ]
