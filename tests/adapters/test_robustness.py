"""No single record, clock or setting can stop the job or blind it (the pure core and the
operator with fakes; the same cases through a real Flink job are in
tests/minicluster/test_robustness_flink.py).

- Whatever one line holds, it ends as a score, a late record or a dead letter: property-based
  over arbitrary bytes, arbitrary JSON and the hostile cases, at the parser and the operator.
- Anything that raises while an input is scored is a dead letter ``internal_error`` and the
  entity goes on from its state before that input (udfs/core/guard.py).
- An event far ahead of its entity's clock is held apart; the entity and every other one
  go on as if it had not come; a real jump is followed after ``clock_confirm_events``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import CFG, SEC, T0, Harness, normalised, per_entity_and_kind, stream
from udfs.core import detector as detector_module
from udfs.core import native
from udfs.core import replay as replay_module
from udfs.core.config import DetectorConfig, LatenessConfig
from udfs.core.events import (
    CLOCK_JUMP,
    INTERNAL_ERROR,
    DeadLetter,
    Event,
    ParseConfig,
    parse_line,
)
from udfs.core.feedback import Verdict, parse_event_or_verdict
from udfs.core.guard import END, Discard, feed
from udfs.core.replay import replay
from udfs.parse import detect_input
from udfs.tags import DEAD_LETTER_TAG

# A fixed seed and a budget: the suite's run is the same every time and stays short.
PROPERTY = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PARSE = ParseConfig()

HOSTILE = [
    '{"entity": "a", "ts": "' + "1" * 5_000 + '", "metrics": {"x": 1}}',
    '{"entity": "a", "ts": ' + "1" * 5_000 + ', "metrics": {"x": 1}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": ' + "9" * 5_000 + "}}",
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": ' + "9" * 400 + "}}",
    '{"entity": "a", "ts": 1e999, "metrics": {"x": 1}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": 1e999}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": -1e999}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": NaN}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": 1.7976931348623157e308}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": 5e-324}}',
    "[" * 30_000 + "]" * 30_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    '{"entity": "a\\ud800", "ts": 1767225600000, "metrics": {"x": 1}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x\\udfff": 1}}',
    '{"entity": "a\\u0000", "ts": 1767225600000, "metrics": {"x": 1}}',
    "\x00",
    '{"entity": "a", "ts": 1767225600000, "metrics": {"x": 1}}\x00',
    '\ufeff{"entity": "a", "ts": 1767225600000, "metrics": {"x": 1}}',
    "",
    " ",
    "\t\r\n",
    '{"entity": "a", "entity": "b", "ts": 1767225600000, "metrics": {"x": 1, "x": 2}}',
    '{"entity": "a", "ts": "2026-01-01T00:00:00+23:59", "metrics": {"x": 1}}',
    '{"entity": "a", "ts": "9999-12-31T23:59:59.999999-23:59", "metrics": {"x": 1}}',
    '{"entity": "a", "ts": "0001-01-01T00:00:00+23:59", "metrics": {"x": 1}}',
    '{"entity": "a", "ts": 1767225600000, "metrics": {"' + "m" * 10_000 + '": 1}}',
    '{"alert_id": "x", "entity": "a", "verdict": "false_positive", "ts": "' + "1" * 5_000 + '"}',
    '{"alert_id": ' + "1" * 5_000 + ', "entity": "a", "verdict": "false_positive"}',
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Event-shaped objects, so that generated lines reach the deep checks of the parser.
_event_like = st.fixed_dictionaries(
    {},
    optional={
        "entity": st.one_of(_scalars, st.sampled_from(["srv-1", "db-1"])),
        "ts": st.one_of(
            _scalars,
            st.integers(min_value=T0 - 10**9, max_value=T0 + 10**9),
            st.sampled_from(["2026-01-01T00:00:00Z", "1767225600000", "2099-01-01T00:00:00Z"]),
        ),
        "metrics": st.one_of(
            _json,
            st.dictionaries(
                st.text(st.characters(exclude_categories=()), max_size=12),
                st.one_of(st.floats(allow_nan=True, allow_infinity=True), _scalars),
                max_size=5,
            ),
        ),
        "id": _scalars,
        "verdict": st.sampled_from(["false_positive", "true_positive", "maybe"]),
        "alert_id": _scalars,
    },
)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


_lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(st.characters(exclude_categories=()), max_size=200),
    _json.map(_dumps),
    _event_like.map(_dumps),
    st.sampled_from(HOSTILE),
)


# -- the parser ---------------------------------------------------------------------------


@PROPERTY
@given(_lines)
def test_the_parser_never_raises_and_always_answers(line: str) -> None:
    rec = parse_event_or_verdict(line, PARSE)
    assert isinstance(rec, (Event, Verdict, DeadLetter))
    if isinstance(rec, DeadLetter):
        assert rec.reason and isinstance(rec.detail, str) and len(rec.detail) <= 300


def test_the_hostile_cases_are_dead_letters_with_their_reason() -> None:
    reasons = [getattr(parse_event_or_verdict(line, PARSE), "reason", "event") for line in HOSTILE]
    assert reasons[:10] == [
        "bad_timestamp",  # 5,000 digits in a string
        "invalid_json",  # 5,000 digits as a JSON number
        "invalid_json",
        "non_finite_metric",  # beyond float range
        "bad_timestamp",  # 1e999
        "non_finite_metric",
        "non_finite_metric",
        "non_finite_metric",  # NaN
        "event",  # the largest float is a number
        "event",
    ]
    assert reasons[10:12] == ["invalid_json", "invalid_json"]  # deep nesting
    assert reasons[12:14] == ["bad_entity", "bad_metric_name"]  # lone surrogates
    assert reasons[16:21] == ["invalid_json"] * 5  # trailing NUL, BOM, empty and blank lines


def test_a_timestamp_of_5000_digits_is_one_dead_letter_in_the_replay() -> None:
    lines = [e.to_json() for e in stream(30, "a", seed=1)]
    lines.insert(10, HOSTILE[0])
    out = list(replay((parse_line(x, PARSE) for x in lines), CFG))
    assert [r["reason"] for k, r in out if k == "dead_letter"] == ["bad_timestamp"]
    assert sum(1 for k, _ in out if k == "score") == 30


@PROPERTY
@given(st.lists(_lines, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_every_line_given_to_the_operator_is_accounted_for(lines: list[str], rng: Any) -> None:
    """Each event line is a score, a late record or a dead letter, at once or at the end of
    the input; a verdict line is applied or a dead letter; nothing raises."""
    good = [e.to_json() for e in stream(6, "srv-1", seed=rng.randrange(100))]
    mixed = good + lines
    rng.shuffle(mixed)
    h = Harness()
    placed_verdicts = 0
    for line in mixed:
        rec = parse_event_or_verdict(line, PARSE)
        key = rec.entity if isinstance(rec, (Event, Verdict)) else ""
        got = h.group(key, [line])
        if isinstance(rec, Verdict) and not any(k == "dead_letter" for k, _ in got):
            placed_verdicts += 1
    h.end_of_input()
    kinds = [k for k, _ in h.out]
    accounted = kinds.count("score") + kinds.count("late") + kinds.count("dead_letter")
    assert accounted + placed_verdicts == len(mixed)


# -- a record that raises while it is scored -------------------------------------------------

POISON = 666.25


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The pure detector, with a scoring bug that an event with ``cpu == POISON`` triggers
    (a compiled class cannot be patched; the two give the same records)."""
    pure = native.pure("detector", "EntityDetector")
    original = pure._process

    def process(self: Any, ev: Event, out: list[Any]) -> None:
        if ev.metrics.get("cpu") == POISON:
            raise ArithmeticError("poisoned by the test")
        original(self, ev, out)

    monkeypatch.setattr(pure, "_process", process)
    monkeypatch.setattr(replay_module, "EntityDetector", pure)
    monkeypatch.setattr(detector_module, "EntityDetector", pure)
    import udfs.detect

    monkeypatch.setattr(udfs.detect, "EntityDetector", pure)
    return pure


def _with_poison(at: int, entity: str = "a") -> tuple[list[Event], list[Event], Event]:
    a = stream(400, "a", seed=1, spike=300)
    b = stream(400, "b", seed=2, start=T0 + 250)
    clean = sorted(a + b, key=lambda e: e.ts_ms)
    poison = Event(entity, T0 + at * SEC + 500, {"cpu": POISON, "mem": 30.0})
    dirty = sorted([*clean, poison], key=lambda e: e.ts_ms)
    return clean, dirty, poison


def _without_dead_letters(out: list[Any]) -> list[Any]:
    return [normalised(k, r) for k, r in out if k != "dead_letter"]


@pytest.mark.parametrize("at", [150, 399])  # released by a later event; by the end of input
def test_an_event_that_raises_is_an_internal_error_and_changes_nothing_else(
    poisoned: Any, at: int
) -> None:
    clean, dirty, poison = _with_poison(at)
    expected = list(replay(clean, CFG))
    got = list(replay(dirty, CFG))
    dead = [r for k, r in got if k == "dead_letter"]
    assert dead == [
        {
            "reason": INTERNAL_ERROR,
            "field": None,
            "detail": "ArithmeticError: poisoned by the test",
            "raw": poison.to_json(),
        }
    ]
    assert _without_dead_letters(got) == _without_dead_letters(expected)
    assert any(k == "alert" for k, _ in expected)


def test_after_an_internal_error_the_entity_state_is_the_one_without_that_event(
    poisoned: Any,
) -> None:
    clean, dirty, _ = _with_poison(150)
    states = []
    for events in (clean, dirty):
        guarded = replay_module._Guarded("a", CFG)
        for ev in events:
            if ev.entity == "a":
                guarded.give(ev)
        states.append(guarded.det.snapshot())
    assert states[0] == states[1]


def test_the_operator_refuses_a_record_that_raises_counts_it_and_goes_on(poisoned: Any) -> None:
    clean, dirty, poison = _with_poison(150)
    h = Harness()
    for ev in dirty:
        h.element(ev)
    h.end_of_input()
    dead = [r for k, r in h.out if k == "dead_letter"]
    assert [(r["reason"], r["raw"]) for r in dead] == [(INTERNAL_ERROR, poison.to_json())]
    assert h.ctx.metrics["anomaly.dead_letters_internal_error"].count == 1
    expected = [normalised(k, r) for k, r in replay(clean, CFG)]
    assert per_entity_and_kind([x for x in h.out if x[0] != "dead_letter"]) == per_entity_and_kind(
        expected
    )
    # A restore from the entity's state (snapshot and journal, with the discard in it)
    # goes on like the uninterrupted run.
    assert h.stored("a") is None  # cleared at the end; the journal was read on every miss


def test_a_restore_replays_the_discard_the_guard_journaled(poisoned: Any) -> None:
    clean, dirty, poison = _with_poison(150)
    cut = dirty.index(poison) + 3  # the poison has been released (and refused) by now
    h = Harness(snapshot_every=64)
    for ev in dirty[:cut]:
        h.element(ev)
    restored = Harness(snapshot_every=64)
    restored.restore_from(h)
    for ev in dirty[cut:]:
        restored.element(ev)
    restored.end_of_input()
    expected = [normalised(k, r) for k, r in replay(clean, CFG)]
    got = [x for x in restored.out if x[0] != "dead_letter"]
    assert per_entity_and_kind(got) == per_entity_and_kind(expected)


def test_feed_refuses_the_input_itself_when_nothing_buffered_is_to_blame() -> None:
    class Broken:
        processing = None

        def on_verdict(self, v: Verdict) -> list[Any]:
            raise KeyError("alert_id")

    v = Verdict("x", "a", "false_positive", "", None)
    det, out, steps = feed(Broken(), v, lambda steps: "rebuilt")
    assert det == "rebuilt" and steps == []
    assert out[0][1]["reason"] == INTERNAL_ERROR and out[0][1]["detail"] == "KeyError: 'alert_id'"


# -- clocks --------------------------------------------------------------------------------


def _run(events: list[Event], cfg: DetectorConfig = CFG) -> list[Any]:
    return [normalised(k, r) for k, r in replay(events, cfg)]


def test_one_event_from_the_far_future_is_a_dead_letter_and_changes_nothing_else() -> None:
    a = stream(400, "a", seed=1, spike=300)
    b = stream(400, "b", seed=2, start=T0 + 250, spike=320)
    clean = sorted(a + b, key=lambda e: e.ts_ms)
    wrong = Event("a", 4_070_908_800_000, {"cpu": 50.0, "mem": 30.0})  # 2099-01-01
    dirty = list(clean)
    dirty.insert(200, wrong)
    got, expected = _run(dirty), _run(clean)
    assert [(r["reason"], r["raw"]) for k, r in got if k == "dead_letter"] == [
        (CLOCK_JUMP, wrong.to_json())
    ]
    assert [x for x in got if x[0] != "dead_letter"] == expected
    assert sum(1 for k, r in got if k == "score" and r["entity"] == "a") == 400


def test_a_real_jump_is_followed_after_the_confirming_events_with_the_same_records() -> None:
    """A gap of two hours in an entity's reporting: its first events after it are held until
    ``clock_confirm_events`` agree, then scored in order as if never held."""
    before = stream(300, "a", seed=1)
    after = stream(300, "a", seed=2, start=before[-1].ts_ms + 2 * 3_600_000)
    events = before + after
    det = detector_module.EntityDetector("a", CFG)
    released_at = []
    for i, ev in enumerate(events):
        if any(k == "score" and r["ts_ms"] == after[0].ts_ms for k, r in det.on_event(ev)):
            released_at.append(i)
    det.flush()
    n = CFG.lateness.clock_confirm_events
    # The held ones come in with the n-th, then wait out the order bound like any event.
    assert len(released_at) == 1 and released_at[0] >= len(before) + n - 1
    off = dataclasses.replace(CFG, lateness=dataclasses.replace(CFG.lateness, max_clock_jump_ms=0))
    assert _run(events) == _run(events, off)


def test_a_held_event_comes_in_when_the_watermark_passes_it() -> None:
    events = stream(50, "a", seed=1)
    ahead = Event("a", events[-1].ts_ms + 2 * 3_600_000, {"cpu": 1.0, "mem": 2.0})
    det = detector_module.EntityDetector("a", CFG)
    for ev in events:
        det.on_event(ev)
    assert det.on_event(ahead) == []
    assert det.earliest_buffered_ms() is not None  # a release timer keeps the entity alive
    out = det.on_watermark(ahead.ts_ms)
    assert [r["ts_ms"] for k, r in out if k == "score"][-1] == ahead.ts_ms
    assert not any(k == "dead_letter" for k, _ in out)


def test_an_entity_holds_at_most_clock_confirm_events() -> None:
    cfg = dataclasses.replace(CFG, lateness=LatenessConfig(5_000, 600_000, 3_600_000, 2))
    det = detector_module.EntityDetector("a", cfg)
    for ev in stream(20, "a", seed=1):
        det.on_event(ev)
    far = [Event("a", 4_070_908_800_000 + i * SEC, {"cpu": 1.0}) for i in range(2)]
    assert det.on_event(far[0]) == []
    assert det.on_event(far[1]) != []  # the second one confirms: both come in
    assert det.max_seen_ms == far[1].ts_ms


def test_the_dead_letter_tag_is_what_the_harness_reads() -> None:
    assert DEAD_LETTER_TAG.tag_id == "dead-letter"
    assert detect_input(Event("a", T0, {"x": 1.0}))[0] == "a"
    assert END is not None and Discard(Event("a", T0, {"x": 1.0})).event.entity == "a"
