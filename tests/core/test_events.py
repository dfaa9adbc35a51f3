"""The event contract (udfs.core.events): every bad record becomes a dead letter that names
its reason and field and keeps the raw text; every accepted timestamp form gives the right
UTC epoch milliseconds; and the parser never raises, whatever it is fed."""

from __future__ import annotations

import json
import math
import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from udfs.core.events import DeadLetter, Event, ParseConfig, parse_line

CFG = ParseConfig()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a plausible timestamp


def epoch_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime, by integer timedelta arithmetic."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


def line(**fields: Any) -> str:
    """A JSON line with a valid event's fields, overridden (``None`` deletes a field)."""
    obj: dict[str, Any] = {"entity": "srv-1", "ts": T_MS, "metrics": {"cpu": 51.5}}
    for key, value in fields.items():
        if value is _DELETE:
            obj.pop(key, None)
        else:
            obj[key] = value
    return json.dumps(obj, ensure_ascii=False)


_DELETE = object()


# -- dead letters --------------------------------------------------------------------------

DEAD_LETTERS = [
    # (case id, raw line, expected reason, expected field)
    ("truncated_json", '{"entity": "srv-1", "ts": ', "invalid_json", None),
    ("not_json_at_all", "srv-1 cpu=51", "invalid_json", None),
    ("empty_line", "", "invalid_json", None),
    ("json_array", "[1, 2, 3]", "not_an_object", None),
    ("json_string", '"srv-1"', "not_an_object", None),
    ("json_number", "42", "not_an_object", None),
    ("json_null", "null", "not_an_object", None),
    ("entity_missing", line(entity=_DELETE), "missing_entity", "entity"),
    ("entity_empty", line(entity=""), "missing_entity", "entity"),
    ("entity_null", line(entity=None), "missing_entity", "entity"),
    ("entity_number", line(entity=42), "bad_entity", "entity"),
    ("entity_list", line(entity=["srv-1"]), "bad_entity", "entity"),
    ("entity_blank", line(entity="   "), "bad_entity", "entity"),
    ("entity_too_long", line(entity="x" * 257), "bad_entity", "entity"),
    ("ts_missing", line(ts=_DELETE), "missing_timestamp", "ts"),
    ("ts_null", line(ts=None), "missing_timestamp", "ts"),
    ("ts_words", line(ts="last tuesday"), "bad_timestamp", "ts"),
    ("ts_empty", line(ts=""), "bad_timestamp", "ts"),
    ("ts_bool", line(ts=True), "bad_timestamp", "ts"),
    ("ts_fractional_ms", line(ts=1_767_225_600_000.5), "bad_timestamp", "ts"),
    ("ts_object", line(ts={"ms": T_MS}), "bad_timestamp", "ts"),
    ("ts_bad_month", line(ts="2026-13-01T00:00:00Z"), "bad_timestamp", "ts"),
    ("ts_epoch_seconds", line(ts=1_767_225_600), "absurd_timestamp", "ts"),
    ("ts_epoch_seconds_string", line(ts="1767225600"), "absurd_timestamp", "ts"),
    ("ts_epoch_microseconds", line(ts=1_767_225_600_000_000), "absurd_timestamp", "ts"),
    ("ts_negative", line(ts=-1), "absurd_timestamp", "ts"),
    ("ts_1970", line(ts="1970-01-01T00:00:00Z"), "absurd_timestamp", "ts"),
    ("ts_just_before_2000", line(ts="1999-12-31T23:59:59.999Z"), "absurd_timestamp", "ts"),
    ("ts_just_after_2100", line(ts="2100-01-01T00:00:00.001Z"), "absurd_timestamp", "ts"),
    ("metric_nan_literal", line().replace("51.5", "NaN"), "non_finite_metric", "metrics.cpu"),
    (
        "metric_infinity_literal",
        line().replace("51.5", "Infinity"),
        "non_finite_metric",
        "metrics.cpu",
    ),
    (
        "metric_minus_infinity",
        line().replace("51.5", "-Infinity"),
        "non_finite_metric",
        "metrics.cpu",
    ),
    (
        "metric_overflowing_float",
        line().replace("51.5", "1e400"),
        "non_finite_metric",
        "metrics.cpu",
    ),
    ("metric_string", line(metrics={"cpu": "high"}), "non_numeric_metric", "metrics.cpu"),
    ("metric_numeric_string", line(metrics={"cpu": "51.5"}), "non_numeric_metric", "metrics.cpu"),
    ("metric_null", line(metrics={"cpu": None}), "non_numeric_metric", "metrics.cpu"),
    ("metric_list", line(metrics={"cpu": [51.5]}), "non_numeric_metric", "metrics.cpu"),
    ("metric_true", line(metrics={"cpu": True}), "non_numeric_metric", "metrics.cpu"),
    ("metric_false", line(metrics={"up": 1, "cpu": False}), "non_numeric_metric", "metrics.cpu"),
    ("metric_empty_name", line(metrics={"": 1.0}), "non_numeric_metric", "metrics."),
    ("metrics_empty", line(metrics={}), "no_metrics", "metrics"),
    ("metrics_missing", line(metrics=_DELETE), "no_metrics", "metrics"),
    ("metrics_list", line(metrics=[51.5]), "no_metrics", "metrics"),
    ("metrics_number", line(metrics=51.5), "no_metrics", "metrics"),
    (
        "metrics_too_many",
        line(metrics={f"m{i}": float(i) for i in range(257)}),
        "too_many_metrics",
        "metrics",
    ),
    ("id_object", line(id={"a": 1}), "bad_id", "id"),
    ("id_float", line(id=1.5), "bad_id", "id"),
    # JSON's escapes can spell a lone surrogate: no Flink key (a Java string) can hold it.
    ("entity_lone_surrogate", line(entity="srv-\ud800"), "bad_entity", "entity"),
]


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [case[1:] for case in DEAD_LETTERS],
    ids=[case[0] for case in DEAD_LETTERS],
)
def test_bad_record_becomes_dead_letter_with_reason_field_and_raw(
    raw: str, reason: str, field: str | None
) -> None:
    got = parse_line(raw, CFG)
    assert isinstance(got, DeadLetter)
    assert (got.reason, got.field) == (reason, field)
    assert got.raw == raw
    assert got.to_dict()["raw"] == raw and got.to_dict()["reason"] == reason


def test_first_problem_in_field_order_is_reported() -> None:
    # Entity, then timestamp, then metrics: the earliest broken field names the record.
    raw = json.dumps({"entity": 7, "ts": "never", "metrics": {}})
    got = parse_line(raw, CFG)
    assert isinstance(got, DeadLetter) and (got.reason, got.field) == ("bad_entity", "entity")


def test_oversized_record_is_dead_letter_keeping_a_bounded_prefix() -> None:
    cfg = ParseConfig(max_record_bytes=200)
    raw = line(id="x" * 300)
    got = parse_line(raw, cfg)
    assert isinstance(got, DeadLetter)
    assert (got.reason, got.field) == ("oversized", None)
    assert got.raw == raw[:200]


def test_oversized_is_measured_in_utf8_bytes_not_characters() -> None:
    cfg = ParseConfig(max_record_bytes=200)
    # 120 characters of padding, each 2 bytes in UTF-8: under 200 characters, over 200 bytes.
    raw = line(id="é" * 120)
    assert len(raw) < 200 < len(raw.encode("utf-8"))
    got = parse_line(raw, cfg)
    assert isinstance(got, DeadLetter) and got.reason == "oversized"


def test_record_at_the_default_size_limit_parses_and_one_byte_more_does_not() -> None:
    base = line(id="")
    pad = CFG.max_record_bytes - len(base.encode("utf-8"))
    exact = line(id="x" * pad)
    assert len(exact.encode("utf-8")) == CFG.max_record_bytes
    assert isinstance(parse_line(exact, CFG), Event)
    over = line(id="x" * (pad + 1))
    got = parse_line(over, CFG)
    assert isinstance(got, DeadLetter) and got.reason == "oversized"


def test_exactly_max_metrics_is_accepted() -> None:
    got = parse_line(line(metrics={f"m{i}": float(i) for i in range(256)}), CFG)
    assert isinstance(got, Event) and len(got.metrics) == 256


# -- timestamps ----------------------------------------------------------------------------

TIMESTAMPS = [
    ("iso_z", "2026-03-15T12:34:56Z", datetime(2026, 3, 15, 12, 34, 56, tzinfo=UTC)),
    (
        "iso_z_millis",
        "2026-03-15T12:34:56.789Z",
        datetime(2026, 3, 15, 12, 34, 56, 789_000, tzinfo=UTC),
    ),
    (
        "iso_plus_two_hours",
        "2026-03-15T14:34:56.789+02:00",
        datetime(2026, 3, 15, 12, 34, 56, 789_000, tzinfo=UTC),
    ),
    (
        "iso_minus_five_thirty",
        "2026-03-15T07:04:56-05:30",
        datetime(2026, 3, 15, 12, 34, 56, tzinfo=UTC),
    ),
    (
        "iso_offset_crosses_midnight",
        "2026-01-01T01:00:00+02:00",
        datetime(2025, 12, 31, 23, 0, 0, tzinfo=UTC),
    ),
    ("iso_naive_is_utc", "2026-03-15T12:34:56", datetime(2026, 3, 15, 12, 34, 56, tzinfo=UTC)),
    ("iso_naive_space", "2014-04-01 00:05:00", datetime(2014, 4, 1, 0, 5, tzinfo=UTC)),
    (
        "iso_microseconds_truncate_to_ms",
        "2026-03-15T12:34:56.789999Z",
        datetime(2026, 3, 15, 12, 34, 56, 789_000, tzinfo=UTC),
    ),
    ("lower_bound_2000", "2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
    ("upper_bound_2100", "2100-01-01T00:00:00Z", datetime(2100, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("ts", "expected"), [c[1:] for c in TIMESTAMPS], ids=[c[0] for c in TIMESTAMPS]
)
def test_iso_timestamp_parses_to_utc_epoch_ms(ts: str, expected: datetime) -> None:
    got = parse_line(line(ts=ts), CFG)
    assert isinstance(got, Event)
    assert got.ts_ms == epoch_ms(expected)


def test_epoch_ms_integer_and_digit_string_parse_to_the_same_ms() -> None:
    expected = epoch_ms(datetime(2026, 3, 15, 12, 34, 56, 789_000, tzinfo=UTC))
    as_int = parse_line(line(ts=expected), CFG)
    as_str = parse_line(line(ts=str(expected)), CFG)
    as_padded_str = parse_line(line(ts=f" {expected} "), CFG)
    assert isinstance(as_int, Event) and as_int.ts_ms == expected
    assert isinstance(as_str, Event) and as_str.ts_ms == expected
    assert isinstance(as_padded_str, Event) and as_padded_str.ts_ms == expected


def test_valid_event_keeps_entity_float_metrics_and_string_id() -> None:
    got = parse_line(line(metrics={"cpu": 51, "mem": 0.25}, id=7), CFG)
    assert got == Event("srv-1", T_MS, {"cpu": 51.0, "mem": 0.25}, "7")
    assert all(type(v) is float for v in got.metrics.values())  # type: ignore[union-attr]


def test_event_json_round_trips_through_the_parser() -> None:
    ev = Event("srv-1", T_MS, {"cpu": 0.1 + 0.2, "mem": 1e-300}, "e-1")
    assert parse_line(ev.to_json(), CFG) == ev


# -- crash classes and non-finite literals --------------------------------------------------------------


@pytest.mark.parametrize("ts", ["²", "--5", "-²"])
def test_parser_does_not_raise_on_digit_like_timestamp_strings(ts: str) -> None:
    got = parse_line(line(ts=ts), CFG)
    assert isinstance(got, DeadLetter) and (got.reason, got.field) == ("bad_timestamp", "ts")


def test_integer_metric_too_large_for_a_float_is_a_dead_letter() -> None:
    raw = line().replace("51.5", "1" + "0" * 400)
    got = parse_line(raw, CFG)
    assert isinstance(got, DeadLetter)
    assert (got.reason, got.field, got.raw) == ("non_finite_metric", "metrics.cpu", raw)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_timestamp_literal_is_reported_against_the_ts_field(literal: str) -> None:
    got = parse_line(line().replace(str(T_MS), literal), CFG)
    assert isinstance(got, DeadLetter)
    assert (got.reason, got.field) == ("bad_timestamp", "ts")


def test_nan_entity_is_a_bad_entity() -> None:
    got = parse_line(line().replace('"srv-1"', "NaN"), CFG)
    assert isinstance(got, DeadLetter) and (got.reason, got.field) == ("bad_entity", "entity")


# -- fuzz ----------------------------------------------------------------------------------

# Printable ASCII plus non-ASCII letters, a lone surrogate and a line separator. Unicode
# *digits* such as '²' are left out on purpose: they crash the parser (pinned above by
# test_parser_does_not_raise_on_digit_like_timestamp_strings).
_ALPHABET = string.printable + "éß中\u2028\ud800"


def _garbage(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, n)))


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 9 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, T_MS, 1_767_225_600, rng.randint(-(10**18), 10**18)])
    if kind == 3:
        return rng.choice([rng.uniform(-1e9, 1e9), 1e308, -0.0, math.nan, math.inf, 5e-324])
    if kind == 4:
        return _garbage(rng, 12)
    if kind == 5:
        return rng.choice(
            ["2026-01-01T00:00:00Z", "2026-01-01", "1767225600000", "", " ", "-", "T", "Z"]
        )
    if kind == 6:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 7:
        return {_garbage(rng, 4): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    # An event-shaped object whose every field is random (so deep checks are reached).
    obj: dict[str, Any] = {
        "entity": rng.choice(["srv-1", "", _json_value(rng, depth + 1)]),
        "ts": rng.choice([T_MS, "2026-01-01T00:00:00+02:00", _json_value(rng, depth + 1)]),
        "metrics": {
            rng.choice(["cpu", "mem", "", _garbage(rng, 3)]): _json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        },
    }
    if rng.random() < 0.3:
        obj["id"] = _json_value(rng, depth + 1)
    return obj


def _check_result(raw: str, got: object) -> None:
    if isinstance(got, DeadLetter):
        assert got.raw == raw
        assert got.reason
        return
    assert isinstance(got, Event)
    assert isinstance(got.entity, str) and got.entity.strip()
    assert CFG.min_ts_ms <= got.ts_ms <= CFG.max_ts_ms
    assert got.metrics and all(math.isfinite(v) for v in got.metrics.values())


def test_parser_never_raises_on_random_garbage_strings() -> None:
    rng = random.Random(20260101)
    for _ in range(3000):
        raw = _garbage(rng, 120)
        _check_result(raw, parse_line(raw, CFG))


def test_parser_never_raises_on_random_json_values() -> None:
    rng = random.Random(1767225600)
    kinds: set[str] = set()
    n = 0
    while n < 4000:
        try:
            raw = json.dumps(_json_value(rng))
        except ValueError:
            continue  # e.g. a surrogate-keyed dict json.dumps itself refuses
        n += 1
        got = parse_line(raw, CFG)
        _check_result(raw, got)
        kinds.add(got.reason if isinstance(got, DeadLetter) else "event")
    # The fuzz reaches deep into the contract, not only the first checks.
    assert {"not_an_object", "bad_timestamp", "non_numeric_metric", "event"} <= kinds
