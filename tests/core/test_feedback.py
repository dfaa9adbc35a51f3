"""Operator verdicts (udfs.core.feedback): parsed into a Verdict or a dead letter naming the
field, and a per-entity threshold raise that grows per false positive up to a cap, shrinks
per true positive down to 0, decays with event time, counts each alert once, and survives a
snapshot/restore through the state codec."""

from __future__ import annotations

import json
import random

import pytest

from state.codec import decode, encode
from udfs.core.events import DeadLetter
from udfs.core.feedback import (
    FeedbackConfig,
    ThresholdFeedback,
    Verdict,
    parse_verdict,
)

HOUR = 3_600_000
T0 = 1_767_225_600_000
CFG = FeedbackConfig(fp_step=0.25, max_raise=1.5, tp_step=0.1, half_life_ms=HOUR, remember=4)


def fp(alert_id: str) -> Verdict:
    return Verdict(alert_id, "srv-1", "false_positive")


def tp(alert_id: str) -> Verdict:
    return Verdict(alert_id, "srv-1", "true_positive")


# -- parsing ---------------------------------------------------------------------------------


def test_parses_a_full_verdict() -> None:
    raw = json.dumps(
        {
            "alert_id": "a3f2d2ab9c8e6b4b",
            "entity": "srv-1",
            "verdict": "false_positive",
            "reason": "planned load test",
            "ts": "2026-01-01T00:00:00Z",
        }
    )
    assert parse_verdict(raw) == Verdict(
        "a3f2d2ab9c8e6b4b", "srv-1", "false_positive", "planned load test", T0
    )


def test_reason_and_timestamp_are_optional() -> None:
    v = parse_verdict(
        '{"alert_id": "a1", "entity": "e", "verdict": "true_positive", "reason": null}'
    )
    assert v == Verdict("a1", "e", "true_positive", "", None)
    assert isinstance(v, Verdict) and not v.false_positive


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "not_an_object", None),
        ('{"entity": "e", "verdict": "false_positive"}', "missing_field", "alert_id"),
        (
            '{"alert_id": "", "entity": "e", "verdict": "false_positive"}',
            "missing_field",
            "alert_id",
        ),
        ('{"alert_id": "a", "verdict": "false_positive"}', "missing_field", "entity"),
        ('{"alert_id": "a", "entity": "e"}', "missing_field", "verdict"),
        ('{"alert_id": 7, "entity": "e", "verdict": "false_positive"}', "bad_field", "alert_id"),
        ('{"alert_id": "a", "entity": ["e"], "verdict": "true_positive"}', "bad_field", "entity"),
        ('{"alert_id": "a", "entity": "e\\udc00", "verdict": "true_positive"}', "bad_field", "entity"),
        ('{"alert_id": "a", "entity": "e", "verdict": "FP"}', "bad_verdict", "verdict"),
        (
            '{"alert_id": "a", "entity": "e", "verdict": "false_positive", "reason": 3}',
            "bad_field",
            "reason",
        ),
        (
            '{"alert_id": "a", "entity": "e", "verdict": "true_positive", "ts": "soon"}',
            "bad_field",
            "ts",
        ),
        ('{"alert_id": "' + "a" * 20_000 + '"}', "oversized", None),
    ],
)
def test_bad_verdicts_are_dead_letters_naming_reason_and_field(
    raw: str, reason: str, field: str | None
) -> None:
    dl = parse_verdict(raw)
    assert isinstance(dl, DeadLetter)
    assert (dl.reason, dl.field) == (reason, field)
    assert dl.raw == raw[: len(dl.raw)] and dl.detail


def test_parsing_never_raises_on_garbage() -> None:
    rng = random.Random(0)
    alphabet = '{}[]":,0123456789abcdefntrul \\\x00\ud800'
    for _ in range(2_000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        assert isinstance(parse_verdict(raw), (Verdict, DeadLetter))


# -- the threshold raise ------------------------------------------------------------------------


def test_no_verdict_no_offset() -> None:
    assert ThresholdFeedback(CFG).offset(T0) == 0.0


def test_each_false_positive_adds_a_step_up_to_the_cap() -> None:
    fb = ThresholdFeedback(CFG)
    offsets = []
    for i in range(8):
        fb.apply(fp(f"a{i}"), T0)
        offsets.append(fb.offset(T0))
    assert offsets == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.5, 1.5]


def test_true_positives_lower_the_raise_but_never_below_zero() -> None:
    fb = ThresholdFeedback(CFG)
    fb.apply(fp("a0"), T0)
    offsets = []
    for i in range(4):
        fb.apply(tp(f"b{i}"), T0)
        offsets.append(fb.offset(T0))
    assert offsets == pytest.approx([0.15, 0.05, 0.0, 0.0], abs=1e-15)
    assert offsets[-1] == 0.0


def test_the_raise_halves_every_half_life_of_event_time() -> None:
    fb = ThresholdFeedback(CFG)
    fb.apply(fp("a0"), T0)
    fb.apply(fp("a1"), T0)
    assert [fb.offset(T0 + k * HOUR) for k in range(4)] == [0.5, 0.25, 0.125, 0.0625]
    # A new step lands on the decayed value: 0.25 left after one hour, plus 0.25.
    fb.apply(fp("a2"), T0 + HOUR)
    assert fb.offset(T0 + HOUR) == 0.5
    assert fb.offset(T0 + 2 * HOUR) == 0.25


def test_event_time_does_not_run_backwards() -> None:
    fb = ThresholdFeedback(CFG)
    fb.apply(fp("a0"), T0 + HOUR)
    assert fb.offset(T0) == 0.25  # a query before the last change sees the last change
    fb.apply(fp("a1"), T0)  # a late verdict is taken at T0 + 1 h, not before it
    assert fb.offset(T0 + 2 * HOUR) == 0.25


def test_the_same_alert_counts_once_whatever_its_later_verdicts() -> None:
    fb = ThresholdFeedback(CFG)
    assert fb.apply(fp("a0"), T0) is True
    assert fb.apply(fp("a0"), T0) is False  # redelivered
    assert fb.apply(tp("a0"), T0) is False  # changed mind: the first verdict stands
    assert fb.offset(T0) == 0.25


def test_only_the_last_alert_ids_are_remembered() -> None:
    fb = ThresholdFeedback(CFG)  # remember=4
    for i in range(5):
        fb.apply(tp(f"a{i}"), T0)
    assert fb.remembered == ("a1", "a2", "a3", "a4")
    assert fb.apply(fp("a0"), T0) is True  # forgotten, so counted again
    assert fb.apply(fp("a4"), T0) is False


def test_snapshot_is_plain_data_and_restore_continues_identically() -> None:
    a = ThresholdFeedback(CFG)
    verdicts = [(fp("x1"), T0), (fp("x2"), T0 + 10_000), (tp("x3"), T0 + HOUR)]
    for v, t in verdicts:
        a.apply(v, t)
    snap = a.snapshot()
    b = ThresholdFeedback(CFG)
    b.restore(decode(encode(snap)))  # the builtins-only state codec accepts it
    assert b.snapshot() == snap
    for fb in (a, b):
        assert fb.apply(fp("x2"), T0 + 2 * HOUR) is False
        assert fb.apply(fp("x4"), T0 + 2 * HOUR) is True
    assert a.snapshot() == b.snapshot()
    assert a.offset(T0 + 5 * HOUR) == b.offset(T0 + 5 * HOUR) > 0.0


def test_invalid_config_reports_every_problem() -> None:
    with pytest.raises(ValueError) as info:
        FeedbackConfig(fp_step=-0.1, max_raise=float("nan"), tp_step=-1, half_life_ms=0, remember=0)
    msg = str(info.value)
    for part in (
        "fp_step must be >= 0, got -0.1",
        "max_raise must be >= 0, got nan",
        "tp_step must be >= 0, got -1",
        "half_life_ms must be > 0, got 0",
        "remember must be >= 1, got 0",
    ):
        assert part in msg
