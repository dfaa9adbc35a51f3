"""Rules, maintenance windows and operator feedback inside the detector (udfs.core.detector):
a dip the rules rule out never opens an alert, no alert opens in maintenance and the windows
do not learn from it, a false-positive verdict raises the entity's threshold, and all of it
survives a snapshot/restore."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from job.config import load_config
from state.codec import decode, encode
from tests.configs import FAST
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event
from udfs.core.feedback import Verdict
from udfs.core.replay import replay

T0 = 1_767_225_600_000
MIN = 60_000


def cfg_with(*extra: str) -> DetectorConfig:
    return load_config(None, [*FAST, *extra]).detector


def stream(seed: int = 5) -> Iterator[Event]:
    """Every 20 s for 8 h: ``e1`` has a cpu spike at 5 h, ``e2`` a cpu dip at 5 h."""
    rng = random.Random(seed)
    for step in range(480 * 3):
        minute = step // 3
        for entity, shift in (("e1", 45.0), ("e2", -30.0)):
            cpu = 40 + rng.gauss(0, 2) + (shift if 300 <= minute < 315 else 0.0)
            lat = 100 + rng.gauss(0, 5)
            yield Event(entity, T0 + step * 20_000, {"cpu": round(cpu, 3), "lat_ms": lat})


def opens(outputs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int, str]]:
    return [
        (r["entity"], (r["ts_ms"] - T0) // MIN, r["direction"])
        for k, r in outputs
        if k == "alert" and r["kind"] == "open"
    ]


def test_rules_rule_out_a_direction_and_name_the_rule_that_let_an_alert_out() -> None:
    base = opens(list(replay(stream(), cfg_with())))
    assert ("e1", 300, "spike") in base
    dips_only = list(
        replay(stream(), cfg_with("detector.rules.rules=[{metrics: 'cpu*', direction: dip}]"))
    )
    assert all(not (e == "e1" and 295 <= m < 320) for e, m, _ in opens(dips_only))
    spikes = list(
        replay(stream(), cfg_with("detector.rules.rules=[{metrics: 'cpu*', direction: spike}]"))
    )
    spike = next(
        r
        for k, r in spikes
        if k == "alert"
        and r["kind"] == "open"
        and r["entity"] == "e1"
        and r["ts_ms"] == T0 + 300 * MIN
    )
    assert spike["rule"] == "cpu*"


def test_no_alert_opens_in_maintenance_and_the_windows_do_not_learn_from_it() -> None:
    window = "detector.maintenance.windows=[{entities: 'e*', start: '2026-01-01T04:55:00Z', end: '2026-01-01T05:20:00Z'}]"
    out = list(replay(stream(), cfg_with(window)))
    assert all(not 295 <= m < 320 for _, m, _ in opens(out))
    scores = [
        r
        for k, r in out
        if k == "score" and r["entity"] == "e1" and T0 + 300 * MIN <= r["ts_ms"] < T0 + 315 * MIN
    ]
    assert scores and all(r["is_alert"] == 0 for r in scores)
    assert max(r["anomaly_score"] for r in scores) > 0.9999  # still scored, for the audit
    # The windows after maintenance equal those of a run that never saw those events.
    cfg = cfg_with(window)
    with_m, without = EntityDetector("e1", cfg), EntityDetector("e1", cfg)
    start, end = T0 + 295 * MIN, T0 + 320 * MIN
    for ev in stream():
        if ev.ts_ms >= T0 + 330 * MIN:
            break
        if ev.entity != "e1":
            continue
        with_m.on_event(ev)
        if not start <= ev.ts_ms < end:
            without.on_event(ev)
    with_m.flush()
    without.flush()
    assert with_m.snapshot()["scoring"]["features"] == without.snapshot()["scoring"]["features"]


def test_false_positive_verdicts_raise_the_threshold_of_the_entity() -> None:
    cfg = cfg_with("detector.feedback.fp_step=1.5", "detector.feedback.max_raise=1.5")
    events = [ev for ev in stream() if ev.entity == "e1"]
    cut = next(i for i, ev in enumerate(events) if ev.ts_ms >= T0 + 200 * MIN)
    verdict = Verdict("0123456789abcdef", "e1", "false_positive")
    base = list(replay(events, cfg))
    fed = list(replay([*events[:cut], verdict, *events[cut:]], cfg))
    b_open = {r["ts_ms"]: r for k, r in base if k == "alert" and r["kind"] == "open"}
    f_open = {r["ts_ms"]: r for k, r in fed if k == "alert" and r["kind"] == "open"}
    cut_ts = events[cut].ts_ms
    # Before the verdict nothing changes; after it every event is judged up to 1.5 decades
    # more strictly: no alert of a higher severity, at least one gone or lower, and the raise
    # travels on the alert.
    assert {t: r for t, r in f_open.items() if t < cut_ts} == {
        t: r for t, r in b_open.items() if t < cut_ts
    }
    spike = T0 + 300 * MIN
    order = ("info", "warning", "critical")
    assert spike in b_open and "threshold_offset" not in b_open[spike]
    after = [t for t in b_open if t >= cut_ts]
    assert after and set(f_open) - set(b_open) == set()
    for t in after:
        if t in f_open:
            assert order.index(f_open[t]["severity"]) <= order.index(b_open[t]["severity"])
            assert f_open[t]["threshold_offset"] == pytest.approx(
                1.5 * 2.0 ** (-(t - events[cut - 1].ts_ms) / cfg.feedback.half_life_ms), abs=1e-6
            )
    assert any(
        t not in f_open or order.index(f_open[t]["severity"]) < order.index(b_open[t]["severity"])
        for t in after
    )
    half_life = cfg.feedback.half_life_ms
    b_scores = [r for k, r in base if k == "score"]
    f_scores = [r for k, r in fed if k == "score"]
    for b, f in zip(b_scores, f_scores, strict=True):  # one score record per event
        if f["ts_ms"] < events[cut - 1].ts_ms:  # scored before the verdict arrived
            assert f["threshold"] == b["threshold"]
            continue
        offset = 1.5 * 2.0 ** (-(f["ts_ms"] - events[cut - 1].ts_ms) / half_life)
        raised = -math.log10(1 - f["threshold"]) + math.log10(1 - b["threshold"])
        assert raised == pytest.approx(offset, abs=1e-6)


def test_feedback_state_survives_snapshot_and_restore() -> None:
    cfg = cfg_with()
    det = EntityDetector("e1", cfg)
    events = [ev for ev in stream() if ev.entity == "e1"]
    for ev in events[:600]:
        det.on_event(ev)
    det.on_verdict(Verdict("a1", "e1", "false_positive"))
    restored = EntityDetector.restore("e1", cfg, decode(encode(det.snapshot())))
    assert restored.on_verdict(Verdict("a1", "e1", "false_positive")) == []
    a = [json.dumps(o, sort_keys=True) for ev in events[600:] for o in det.on_event(ev)]
    b = [json.dumps(o, sort_keys=True) for ev in events[600:] for o in restored.on_event(ev)]
    assert a == b


def _dumps(outputs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [json.dumps(o, sort_keys=True) for o in outputs]


def test_a_timed_verdict_takes_effect_at_its_ts_however_early_it_arrives() -> None:
    """A verdict with ``ts`` waits for the entity's frontier like an event: placed anywhere
    before its ts passes (even before the entity's first event) it changes the same scores
    from the same event on; behind the frontier it applies at once."""
    cfg = cfg_with("detector.feedback.fp_step=1.5", "detector.feedback.max_raise=1.5")
    events = [ev for ev in stream() if ev.entity == "e1"]
    at = T0 + 200 * MIN + 7_000  # between two events
    verdict = Verdict("0123456789abcdef", "e1", "false_positive", "load test", at)
    cut = next(i for i, ev in enumerate(events) if ev.ts_ms >= at)
    placements = [
        [verdict, *events],  # before the entity exists (creates it)
        [*events[:100], verdict, *events[100:]],
        [*events[: cut - 3], verdict, *events[cut - 3 :]],
    ]
    runs = [_dumps(list(replay(recs, cfg))) for recs in placements]
    assert runs[0] == runs[1] == runs[2]
    base = [json.loads(r) for r in _dumps(list(replay(events, cfg)))]
    fed = [json.loads(r) for r in runs[0]]
    b_scores = [r for k, r in base if k == "score"]
    f_scores = [r for k, r in fed if k == "score"]
    changed = [f["ts_ms"] for b, f in zip(b_scores, f_scores, strict=True) if f["threshold"] != b["threshold"]]
    assert changed and min(changed) > at  # nothing before the verdict's ts moved
    first_after = next(f for f in f_scores if f["ts_ms"] > at)
    raised = -math.log10(1 - first_after["threshold"]) + math.log10(
        1 - next(b for b in b_scores if b["ts_ms"] == first_after["ts_ms"])["threshold"]
    )
    half_life = cfg.feedback.half_life_ms
    assert raised == pytest.approx(1.5 * 2.0 ** (-(first_after["ts_ms"] - at) / half_life), abs=1e-6)
    # Arriving well after its ts (behind the frontier) it applies at the entity's newest time.
    late = _dumps(list(replay([*events[: cut + 50], verdict, *events[cut + 50 :]], cfg)))
    assert late != runs[0]


def test_pending_verdicts_survive_snapshot_and_restore() -> None:
    cfg = cfg_with()
    events = [ev for ev in stream() if ev.entity == "e1"]
    verdict = Verdict("a1", "e1", "false_positive", "", events[400].ts_ms)
    det = EntityDetector("e1", cfg)
    det.on_verdict(verdict)
    assert det.earliest_buffered_ms() == verdict.ts_ms  # the release timer covers it
    for ev in events[:300]:
        det.on_event(ev)
    restored = EntityDetector.restore("e1", cfg, decode(encode(det.snapshot())))
    a = _dumps([o for ev in events[300:] for o in det.on_event(ev)] + det.flush())
    b = _dumps([o for ev in events[300:] for o in restored.on_event(ev)] + restored.flush())
    assert a == b
    feedback = restored.snapshot()["decision"]["feedback"]
    assert feedback[2] == ["a1"]  # the verdict was applied once, after restore


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        ('{"alert_id": "a", "entity": "e1", "verdict": "false_positive", "ts": 1e300}', "absurd_timestamp", "ts"),
        ('{"alert_id": "a", "entity": "   ", "verdict": "false_positive"}', "bad_field", "entity"),
        ('{"alert_id": "a", "entity": "e1", "verdict": "false_positive", "ts": "2062-01-01T00:00:00Z"}', None, None),
    ],
)
def test_verdicts_are_bounded_like_events(raw: str, reason: str | None, field: str | None) -> None:
    from udfs.core.events import DeadLetter, ParseConfig
    from udfs.core.feedback import parse_event_or_verdict

    got = parse_event_or_verdict(raw, ParseConfig())
    if reason is None:
        assert isinstance(got, Verdict)
    else:
        assert isinstance(got, DeadLetter) and (got.reason, got.field) == (reason, field)


def test_a_verdict_is_told_from_an_event_by_its_keys_not_its_text() -> None:
    from udfs.core.events import ParseConfig
    from udfs.core.feedback import parse_event_or_verdict

    raw = '{"alert_id": "a", "entity": "metrics", "verdict": "true_positive", "reason": "metrics"}'
    assert isinstance(parse_event_or_verdict(raw, ParseConfig()), Verdict)


def test_a_verdict_that_cannot_wait_is_applied_at_once_and_an_unplaceable_one_is_a_dead_letter() -> None:
    cfg = cfg_with()
    events = [ev for ev in stream() if ev.entity == "e1"][:100]
    det = EntityDetector("e1", cfg)
    for ev in events:
        det.on_event(ev)
    far = Verdict("a1", "e1", "false_positive", "", events[-1].ts_ms + cfg.lateness.idle_ttl_ms + 1)
    assert det.on_verdict(far) == []
    assert det.earliest_buffered_ms() != far.ts_ms  # not kept waiting: the state can end
    assert det.snapshot()["decision"]["feedback"][2] == ["a1"]
    # No ts and no event yet: nothing to place it by.
    [(kind, rec)] = list(replay([Verdict("a2", "new", "false_positive")], cfg))
    assert kind == "dead_letter" and rec["reason"] == "unplaceable_verdict"
