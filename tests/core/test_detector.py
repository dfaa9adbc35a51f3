"""The per-entity detector (udfs.core.detector): event-time order and lateness per entity,
recovery from a snapshot, idle expiry, readiness, explained alerts, learn gating and
bounded state. Small windows (seconds) keep the streams short."""

from __future__ import annotations

import dataclasses
import pickle
import random
from collections.abc import Iterable
from typing import Any

import pytest

from state.codec import decode, encode
from tests.outputs import one_nan
from udfs.core.alerts import AlertConfig
from udfs.core.config import DetectorConfig, LatenessConfig, ModelConfig, ThresholdConfig
from udfs.core.detector import EntityDetector, Output
from udfs.core.events import Event
from udfs.core.features import FeatureConfig, WindowSpec
from udfs.core.replay import replay

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SEC = 1_000
BOUND = 5_000
TTL = 600_000

SMALL = DetectorConfig(
    lateness=LatenessConfig(max_out_of_orderness_ms=BOUND, idle_ttl_ms=TTL),
    features=FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 5), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(("10s", "1m"),),
        robust_windows=("10s",),
        max_gap_ms=30_000,
        min_count=3,
    ),
    model=ModelConfig(
        ensemble=("window", "hst"), combine="max", hst_trees=5, hst_height=6, hst_window=50,
        min_calibration_events=30, score_smoothing=1,
    ),
    threshold=ThresholdConfig(min_events=200, rarity=3.0, target_alert_rate=0.001, fallback_margin=0.5),
    alerts=AlertConfig(quiet_events=0, quiet_period_ms=30_000, cooldown_ms=60_000, hysteresis_decades=1.5),
)


def with_model(cfg: DetectorConfig, **changes: Any) -> DetectorConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **changes))


def stream(
    n: int,
    seed: int = 1,
    entity: str = "srv-1",
    start: int = T0,
    step: int = SEC,
    shift: dict[int, dict[str, float]] | None = None,
) -> list[Event]:
    """A calm two-metric series, one event per ``step``; ``shift`` adds to chosen events."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        metrics = {"cpu": round(50 + rng.gauss(0, 1), 3), "mem": round(30 + rng.gauss(0, 1), 3)}
        for name, delta in (shift or {}).get(i, {}).items():
            metrics[name] = round(metrics[name] + delta, 3)
        out.append(Event(entity, start + i * step, metrics))
    return out


def run(events: Iterable[Event], cfg: DetectorConfig = SMALL) -> list[Output]:
    return one_nan(list(replay(events, cfg)))


def of_kind(outputs: Iterable[Output], kind: str) -> list[dict[str, Any]]:
    return [rec for k, rec in outputs if k == kind]


def per_entity(outputs: Iterable[Output]) -> dict[str, list[Output]]:
    grouped: dict[str, list[Output]] = {}
    for kind, rec in outputs:
        grouped.setdefault(rec["entity"], []).append((kind, rec))
    return grouped


def shuffle_within_bound(events: list[Event], rng: random.Random) -> list[Event]:
    """Arrival order by ``ts + U(0, bound)``: every event arrives at most ``bound`` behind
    the newest timestamp already seen, so none is late."""
    return sorted(events, key=lambda e: e.ts_ms + rng.uniform(0, BOUND))


def displaced(a: list[Event], b: list[Event]) -> int:
    return sum(x is not y for x, y in zip(a, b, strict=True))


# -- (a) arrival order within the bound ----------------------------------------------------


def test_shuffling_within_the_bound_changes_no_score_or_alert() -> None:
    events = stream(600, shift={400: {"cpu": 30.0}})
    arrived = shuffle_within_bound(events, random.Random(5))
    assert displaced(events, arrived) > 300  # a real shuffle
    in_order = run(events)
    shuffled = run(arrived)
    assert of_kind(in_order, "alert"), "the stream must alert for the comparison to matter"
    assert of_kind(shuffled, "late") == []
    assert shuffled == in_order  # every score (features included) and alert, in order


def test_shuffling_two_entities_independently_changes_no_entitys_outputs() -> None:
    a = stream(400, seed=1, entity="a", shift={300: {"cpu": 30.0}})
    b = stream(400, seed=2, entity="b", start=T0 + 300, shift={350: {"mem": -30.0}})
    in_order = sorted(a + b, key=lambda e: e.ts_ms)
    rng = random.Random(9)
    # Each entity shuffled within the bound, then the two interleaved at random.
    sa, sb = shuffle_within_bound(a, rng), shuffle_within_bound(b, rng)
    mixed: list[Event] = []
    while sa or sb:
        src = sa if sb == [] or (sa and rng.random() < 0.5) else sb
        mixed.append(src.pop(0))
    assert per_entity(run(mixed)) == per_entity(run(in_order))


# -- (b) lateness --------------------------------------------------------------------------


def test_event_older_than_newest_minus_bound_is_late_and_not_scored() -> None:
    det = EntityDetector("srv-1", SMALL)
    for ev in stream(20):  # newest: T0 + 19 s, frontier: T0 + 14 s
        det.on_event(ev)
    late = Event("srv-1", T0 + 19 * SEC - BOUND - 1, {"cpu": 99.0, "mem": 1.0})
    out = det.on_event(late)
    assert [k for k, _ in out] == ["late"]
    rec = out[0][1]
    assert rec["ts_ms"] == T0 + 13_999
    assert rec["frontier_ms"] == T0 + 14_000
    assert rec["lateness_ms"] == 1
    assert rec["event"] == late.to_json()
    assert rec["ts"] == "2026-01-01T00:00:13.999Z"
    scored = [r["ts_ms"] for r in of_kind(det.flush(), "score")]
    assert T0 + 13_999 not in scored


def test_event_at_exactly_newest_minus_bound_is_scored() -> None:
    det = EntityDetector("srv-1", SMALL)
    out: list[Output] = []
    for ev in stream(20):
        out += det.on_event(ev)
    edge = Event("srv-1", T0 + 19 * SEC - BOUND, {"cpu": 49.0, "mem": 31.0})
    out += det.on_event(edge)
    out += det.flush()
    assert of_kind(out, "late") == []
    assert sum(1 for r in of_kind(out, "score") if r["ts_ms"] == edge.ts_ms) == 2


def test_event_within_the_bound_is_scored_in_timestamp_order() -> None:
    events = stream(30)
    straggler = Event("srv-1", T0 + 17_500, {"cpu": 50.5, "mem": 30.5})
    arrival = events[:22] + [straggler] + events[22:]  # arrives 4.5 s behind the newest
    out = run(arrival)
    ts = [r["ts_ms"] for r in of_kind(out, "score")]
    assert of_kind(out, "late") == []
    assert ts == sorted(e.ts_ms for e in events + [straggler])
    # ... and it is scored exactly as if it had arrived in order.
    assert out == run(sorted(arrival, key=lambda e: e.ts_ms))


def test_lateness_is_per_entity_not_decided_by_another_entitys_clock() -> None:
    # Entity b runs an hour behind a: none of b's events is late.
    a = stream(50, entity="a", start=T0 + 3_600_000)
    b = stream(50, entity="b")
    out = run([e for pair in zip(a, b, strict=True) for e in pair])
    assert of_kind(out, "late") == []
    assert len(of_kind(out, "score")) == 100


# -- (c) equal timestamps ------------------------------------------------------------------


def test_equal_timestamp_events_are_processed_independently_of_arrival_order() -> None:
    rng = random.Random(4)
    events = []
    for i in range(300):
        for j in range(1 + (i % 5 == 0) * 2):  # every 5th second carries three events
            metrics = {"cpu": round(50 + rng.gauss(0, 1), 3), "mem": round(30 + rng.gauss(0, 1), 3)}
            events.append(Event("srv-1", T0 + i * SEC, metrics, f"id-{i}-{j}"))
    assert len(events) == 420
    events[350] = Event("srv-1", events[350].ts_ms, {"cpu": 90.0, "mem": 30.0}, "spike")
    results = []
    for seed in (1, 2, 3):
        order = random.Random(seed)
        keyed = [(e.ts_ms, order.random(), e) for e in events]
        results.append(run([e for _, _, e in sorted(keyed, key=lambda k: k[:2])]))
    assert of_kind(results[0], "alert")
    assert results[0] == results[1] == results[2]
    scored = of_kind(results[0], "score")
    assert len(scored) == len(events)


@pytest.mark.parametrize("ensemble", [("window", "hst"), ("window",)])
def test_a_detector_without_features_in_its_scores_decides_exactly_the_same(
    ensemble: tuple[str, ...],
) -> None:
    """with_features=False (the Flink operator unless it emits features): the same alerts,
    scores and state; the score records carry only what the scorer reads."""
    cfg = with_model(SMALL, ensemble=ensemble)
    events = stream(400, seed=7, shift={300: {"cpu": 25.0}, 301: {"cpu": 25.0}})
    events.append(Event("srv-1", events[-1].ts_ms + SEC, {"cpu": 50.0, "mem": 30.0, "disk": 1.0}))
    full, lean = EntityDetector("srv-1", cfg), EntityDetector("srv-1", cfg, with_features=False)
    a: list[Output] = []
    b: list[Output] = []
    for ev in events:
        a += full.on_event(ev)
        b += lean.on_event(ev)
        assert full.snapshot() == lean.snapshot()
    a += full.flush()
    b += lean.flush()
    assert of_kind(a, "alert") and of_kind(a, "alert") == of_kind(b, "alert")
    strip = [(k, {f: v for f, v in r.items() if f != "features"}) for k, r in a]
    assert strip == [(k, {f: v for f, v in r.items() if f != "features"}) for k, r in b]
    fa, fb = of_kind(a, "score")[-2]["features"], of_kind(b, "score")[-2]["features"]
    assert set(fb) < set(fa) and all(fa[k] == fb[k] or fa[k] != fa[k] for k in fb)
    assert "cpu.1m.zscore" in fa and "cpu.1m.zscore" not in fb and "cpu.1m.std" in fb
    # a restored detector keeps the choice
    assert not EntityDetector.restore("srv-1", cfg, lean.snapshot(), False).with_features


# -- (d) snapshot, codec, restore ----------------------------------------------------------


def uninterrupted_and_resumed(
    events: list[Event], cut: int, cfg: DetectorConfig = SMALL
) -> tuple[list[Output], list[Output], EntityDetector]:
    whole = EntityDetector("srv-1", cfg)
    expected: list[Output] = []
    for ev in events:
        expected += whole.on_event(ev)
    expected += whole.flush()

    first = EntityDetector("srv-1", cfg)
    got: list[Output] = []
    for ev in events[:cut]:
        got += first.on_event(ev)
    data = encode(first.snapshot())
    second = EntityDetector.restore("srv-1", cfg, decode(data))
    for ev in events[cut:]:
        got += second.on_event(ev)
    got += second.flush()
    return one_nan(expected), one_nan(got), first


@pytest.mark.parametrize("cut", [0, 1, 3, 45, 81, 250, 402, 415, 599, 600])
def test_restore_from_encoded_snapshot_continues_like_an_uninterrupted_run(cut: int) -> None:
    events = shuffle_within_bound(stream(600, shift={400: {"cpu": 30.0}}), random.Random(7))
    expected, got, first = uninterrupted_and_resumed(events, cut)
    assert of_kind(expected, "alert")
    assert got == expected
    if 0 < cut < 600:
        assert first.earliest_buffered_ms() is not None  # cut with events still buffered


def test_restore_with_an_open_episode_resolves_it_like_the_uninterrupted_run() -> None:
    events = stream(600, shift={400: {"cpu": 30.0}})
    expected, got, first = uninterrupted_and_resumed(events, 410)
    kinds = [r["kind"] for r in of_kind(expected, "alert")]
    assert "open" in kinds and "resolved" in kinds
    assert got == expected


def test_restore_rejects_another_state_version() -> None:
    snap = EntityDetector("srv-1", SMALL).snapshot()
    with pytest.raises(ValueError, match="srv-1"):
        EntityDetector.restore("srv-1", SMALL, {**snap, "version": 99})


# -- (e) idle expiry -----------------------------------------------------------------------


def later_outputs(gap_ms: int) -> tuple[list[Output], list[Output]]:
    early = stream(300, seed=1, shift={250: {"cpu": 30.0}})
    last = early[-1].ts_ms
    later = stream(300, seed=2, start=last + gap_ms)
    det = EntityDetector("srv-1", SMALL)
    for ev in early:
        det.on_event(ev)
    det.on_watermark(last)  # release everything of the early part
    got: list[Output] = []
    for ev in later:
        got += det.on_event(ev)
    got += det.flush()
    fresh = run(later)
    return one_nan(got), fresh


def test_entity_idle_longer_than_ttl_starts_like_a_new_entity() -> None:
    got, fresh = later_outputs(TTL + SEC)
    # Only the early part's stale record (the Flink job emits it before clearing the state)
    # comes before what a new entity gives.
    [(kind, stale)] = got[:1]
    assert (kind, stale["check"]) == ("drift", "stale_entity")
    assert stale["ts_ms"] == T0 + 299 * SEC + TTL // 2
    assert got[1:] == fresh


def test_entity_idle_shorter_than_ttl_keeps_what_it_learned() -> None:
    got, fresh = later_outputs(TTL - SEC)
    assert len(of_kind(got, "score")) == len(of_kind(fresh, "score"))
    assert got != fresh


# -- (f) readiness -------------------------------------------------------------------------

NO_DECAY = 1e18  # calibration counts every score as exactly 1


def test_no_alert_before_ready_and_ready_once_windows_and_calibration_are_warm() -> None:
    cfg = with_model(SMALL, calibration_half_life=NO_DECAY)
    # Huge spikes while warming up must not alert.
    events = stream(200, shift={i: {"cpu": 60.0} for i in (5, 15, 30, 45, 60, 79)})
    scores = of_kind(run(events, cfg), "score")
    ready = [r["ready"] for r in scores]
    # By hand: the entity is warm once its longest window (1 m) is covered: event 60 at a 1 s
    # cadence. From then the trees learn; they score after hst_window=50 learned events
    # (event 110), and their calibration needs 30 scores: ready from event 140.
    assert ready == [0] * 140 + [1] * 60
    assert all(r["is_alert"] == 0 for r in scores[:140])
    assert all(r["is_alert"] <= r["ready"] for r in scores)


def test_statistics_only_detector_is_ready_after_window_plus_calibration() -> None:
    cfg = with_model(SMALL, calibration_half_life=NO_DECAY, ensemble=("window",))
    scores = of_kind(run(stream(100), cfg), "score")
    # The 1 m baseline window is covered at event 60; 30 calibration scores later: event 90.
    assert [r["ready"] for r in scores] == [0] * 90 + [1] * 10


def test_a_new_metric_does_not_make_a_not_ready_entity_alert() -> None:
    events = stream(60)
    events[30] = Event("srv-1", events[30].ts_ms, {**events[30].metrics, "disk": 1e9})
    assert of_kind(run(events), "alert") == []


# -- (g) explained alerts ------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "direction"), [(30.0, "spike"), (-30.0, "dip")])
def test_injected_change_opens_an_alert_explained_by_the_changed_metric(
    delta: float, direction: str
) -> None:
    events = stream(500, seed=1, shift={400: {"cpu": delta}})
    # At 1 in 10,000 the calm part has no false alert to compete with the injected one.
    strict = dataclasses.replace(SMALL, threshold=dataclasses.replace(SMALL.threshold, target_alert_rate=1e-4, rarity=4.0))
    alerts = of_kind(run(events, strict), "alert")
    assert [a for a in alerts if a["ts_ms"] < events[400].ts_ms] == []  # calm before
    opened = [a for a in alerts if a["kind"] == "open"]
    assert len(opened) == 1
    alert = opened[0]
    assert alert["ts_ms"] == events[400].ts_ms
    assert alert["direction"] == direction
    top = alert["features"][0]
    assert top["feature"].startswith("cpu.") and top["feature"].endswith(".zscore")
    assert top["actual"] == events[400].metrics["cpu"]
    assert (top["z"] > 0) == (delta > 0)
    assert abs(top["actual"] - top["expected"]) > 25
    assert alert["score"] >= alert["threshold"]
    assert alert["entity"] == "srv-1" and alert["config_version"] == "1"
    assert len(alert["features"]) == SMALL.alerts.top_features


# -- (h) learn gating ----------------------------------------------------------------------


def hst_bytes(det: EntityDetector) -> bytes | None:
    return det.snapshot()["scoring"]["models"]["hst"]["masses"]  # masses and counter


def learned_per_event(cfg: DetectorConfig, events: list[Event]) -> list[tuple[int, bool]]:
    """``(is_alert, trees changed)`` for each scored event (released one by one)."""
    det = EntityDetector("srv-1", cfg)
    out = []
    for ev in events:
        det.on_event(ev)
        before = hst_bytes(det)
        scored = of_kind(det.on_watermark(ev.ts_ms), "score")
        assert len(scored) == 1
        out.append((scored[0]["is_alert"], hst_bytes(det) != before))
    return out


PERSISTENT = {i: {"cpu": 30.0 + (i - 400)} for i in range(400, 460)}  # a rising plateau
WARM = 60  # SMALL's longest window (1 m) is covered from event 60 at a 1 s cadence


def test_anomalous_events_do_not_train_the_trees_by_default() -> None:
    cfg = dataclasses.replace(SMALL, lateness=LatenessConfig(0, TTL))
    assert cfg.model.learn_anomalies is False
    result = learned_per_event(cfg, stream(500, shift=PERSISTENT))
    anomalous = [changed for is_alert, changed in result if is_alert]
    assert anomalous, "the plateau must be judged anomalous at least once"
    assert not any(anomalous)
    # Nothing learns before the entity is warm; afterwards every normal event trains.
    assert not any(changed for _, changed in result[1:WARM])  # (event 0 creates the trees)
    assert all(changed for is_alert, changed in result[WARM:] if not is_alert)


def test_with_learn_anomalies_every_event_trains_the_trees() -> None:
    cfg = dataclasses.replace(SMALL, lateness=LatenessConfig(0, TTL))
    cfg = with_model(cfg, learn_anomalies=True)
    result = learned_per_event(cfg, stream(500, shift=PERSISTENT))
    assert any(is_alert for is_alert, _ in result)
    assert all(changed for _, changed in result[WARM:])


def test_not_learning_anomalies_keeps_a_persistent_anomaly_anomalous_at_least_as_long() -> None:
    # The window features absorb a plateau within the longest window (the baseline moves on
    # by design), so only its first events are anomalous; of those, the gated trees learn
    # none, and the plateau is judged anomalous at least as often as by learning trees.
    events = stream(700, shift=PERSISTENT)
    gated = of_kind(run(events, SMALL), "score")
    learning = of_kind(run(events, with_model(SMALL, learn_anomalies=True)), "score")
    during = slice(400, 460)
    assert sum(r["is_alert"] for r in gated[during]) >= 1
    assert sum(r["is_alert"] for r in gated[during]) >= sum(r["is_alert"] for r in learning[during])


# -- (i) bounded state ---------------------------------------------------------------------


def test_encoded_state_of_three_metrics_is_small_and_stops_growing() -> None:
    rng = random.Random(3)
    det = EntityDetector("srv-1", DetectorConfig())
    sizes, raw = {}, {}
    for i in range(40_000):
        metrics = {
            "cpu": rng.gauss(50, 5),
            "latency_ms": rng.gauss(120, 10),
            "error_rate": abs(rng.gauss(0.5, 0.1)),
        }
        det.on_event(Event("srv-1", T0 + i * 60_000, metrics))
        # (complete after the extremes' 8 + 1 blocks of 2,500 events)
        if i + 1 in (25_000, 40_000):
            sizes[i + 1] = len(encode(det.snapshot()))
            raw[i + 1] = len(pickle.dumps(det.snapshot(), protocol=5))
    assert sizes[25_000] <= 16 * 1024
    # What is kept stops growing (the compressed size moves a little with the values).
    assert abs(raw[40_000] - raw[25_000]) <= 64, raw
    assert abs(sizes[40_000] - sizes[25_000]) <= 512, sizes


def test_an_episode_open_when_the_entity_goes_silent_is_resolved_as_idle() -> None:
    strict = dataclasses.replace(SMALL, threshold=dataclasses.replace(SMALL.threshold, target_alert_rate=1e-4, rarity=4.0))
    events = stream(402, seed=1, shift={400: {"cpu": 30.0}, 401: {"cpu": 30.0}})
    det = EntityDetector("srv-1", strict)
    out: list[Output] = []
    for ev in events:
        out += det.on_event(ev)
    out += det.flush()
    alerts = of_kind(out, "alert")
    assert [a["kind"] for a in alerts] == ["open", "resolved"]
    resolved = alerts[1]
    assert resolved["resolution"] == "idle"
    assert resolved["ts_ms"] == events[-1].ts_ms + TTL
    assert resolved["alert_id"] == alerts[0]["alert_id"]
