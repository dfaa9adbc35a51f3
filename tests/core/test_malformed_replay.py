"""Acceptance test of malformed input at the core level: thousands of bad records of every
kind mixed into a multi-entity stream. Every input is accounted for exactly once (a good
event by one score, a bad record by one dead letter with the expected reason), and the
scores and alerts are exactly those of the good records alone."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.outputs import one_nan
from udfs.core.config import DetectorConfig, ModelConfig, ThresholdConfig
from udfs.core.detector import Output
from udfs.core.events import Event, ParseConfig, parse_line
from udfs.core.features import FeatureConfig, WindowSpec
from udfs.core.replay import replay

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
ENTITIES = ("srv-1", "srv-2", "srv-3", "db-1")
MINUTES = 600
PARSE = ParseConfig()
# Windows up to 1 h so that 600 minutes warm the detector up (the default baseline is 24 h).
CFG = DetectorConfig(
    features=FeatureConfig(
        windows=(WindowSpec("5m", 300_000, 10), WindowSpec("1h", 3_600_000, 12)),
        ratio_pairs=(("5m", "1h"),),
        robust_windows=("1h",),
    ),
    model=ModelConfig(hst_window=100),
    threshold=ThresholdConfig(min_events=200),
)


def good_lines(rng: random.Random) -> list[str]:
    """One event per entity per minute, entities in a shuffled order each minute, and a
    spike per entity late enough for the detector to be warm."""
    lines = []
    for minute in range(MINUTES):
        order = list(ENTITIES)
        rng.shuffle(order)
        for k, entity in enumerate(order):
            cpu = 40 + 5 * rng.gauss(0, 1)
            if minute == 450 + 30 * ENTITIES.index(entity):
                cpu += 60
            obj = {
                "entity": entity,
                "ts": T0 + minute * MIN,
                "metrics": {"cpu": round(cpu, 3), "latency_ms": round(rng.gauss(120, 8), 3)},
                "id": f"{entity}-{minute}-{k}",
            }
            lines.append(json.dumps(obj))
    return lines


def _event(rng: random.Random, **over: Any) -> str:
    obj: dict[str, Any] = {
        "entity": rng.choice(ENTITIES),
        "ts": T0 + rng.randrange(MINUTES) * MIN,
        "metrics": {"cpu": rng.uniform(0, 100)},
    }
    obj.update(over)
    return json.dumps(obj)


# Each maker returns a bad raw line; most look like a real entity's event at a real time,
# so a parser that let them through would visibly change that entity's results.
BAD: dict[str, Callable[[random.Random], str]] = {
    "invalid_json": lambda r: _event(r)[: r.randrange(1, 40)],
    "not_an_object": lambda r: json.dumps(r.choice([[1, 2], "srv-1", 42, None, [{"a": 1}]])),
    "oversized": lambda r: _event(r, pad="x" * (PARSE.max_record_bytes + r.randrange(1, 99))),
    "missing_entity": lambda r: r.choice(
        [_event(r, entity=""), _event(r, entity=None), json.dumps({"ts": T0, "metrics": {"a": 1}})]
    ),
    "bad_entity": lambda r: _event(r, entity=r.choice([1, 2.5, True, ["srv-1"], {"n": 1}, "  "])),
    "missing_timestamp": lambda r: _event(r, ts=None),
    "bad_timestamp": lambda r: _event(r, ts=r.choice(["last tuesday", "", "2026-02-30", True])),
    "absurd_timestamp": lambda r: _event(
        r, ts=r.choice([(T0 // 1000) + r.randrange(MINUTES) * 60, 0, -5, 10**16, "1999-01-01"])
    ),
    "no_metrics": lambda r: _event(r, metrics=r.choice([{}, None, [], "cpu=1", 3])),
    "non_numeric_metric": lambda r: _event(
        r, metrics={"cpu": r.choice(["high", None, True, False, [1], {"v": 1}])}
    ),
    "non_finite_metric": lambda r: _event(r, metrics={"mem": 1.0, "cpu": 0.5}).replace(
        "0.5", r.choice(["NaN", "Infinity", "-Infinity", "1e999"])
    ),
    "too_many_metrics": lambda r: _event(
        r, metrics={f"m{i}": float(i) for i in range(PARSE.max_metrics + 1 + r.randrange(5))}
    ),
    "bad_id": lambda r: _event(r, id=r.choice([1.5, [1], {"a": 1}, 0.1])),
}


def mixed_input(seed: int = 2026) -> tuple[list[str], list[str], list[tuple[int, str]]]:
    """All lines, the good lines alone, and ``(position, expected reason)`` of each bad one."""
    rng = random.Random(seed)
    good = good_lines(rng)
    tagged: list[tuple[str, str | None]] = [(raw, None) for raw in good]
    for _ in range(230):
        for reason, make in BAD.items():
            tagged.insert(rng.randrange(len(tagged) + 1), (make(rng), reason))
    lines = [raw for raw, _ in tagged]
    expected = [(pos, reason) for pos, (_, reason) in enumerate(tagged) if reason is not None]
    return lines, good, expected


def run(lines: list[str]) -> list[Output]:
    return one_nan(list(replay((parse_line(raw, PARSE) for raw in lines), CFG)))


def test_every_record_is_accounted_for_once_and_good_results_are_unchanged() -> None:
    lines, good, expected_bad = mixed_input()
    assert len(expected_bad) == 230 * len(BAD) and len(good) == len(ENTITIES) * MINUTES
    out = run(lines)

    # Each bad record: exactly one dead letter, in input order, with its reason and raw text.
    dead = [rec for kind, rec in out if kind == "dead_letter"]
    assert len(dead) == len(expected_bad)
    for (pos, reason), rec in zip(expected_bad, dead, strict=True):
        raw = lines[pos]
        assert rec["reason"] == reason, (raw[:200], rec)
        if reason == "oversized":
            assert raw.startswith(rec["raw"]) and len(rec["raw"]) == PARSE.max_record_bytes
        else:
            assert rec["raw"] == raw
    assert Counter(rec["reason"] for rec in dead) == Counter({reason: 230 for reason in BAD})

    # Each good event: exactly one score record, matched by entity and timestamp.
    good_keys = Counter()
    for raw in good:
        obj = json.loads(raw)
        good_keys[(obj["entity"], obj["ts"])] += 1
    scored = Counter((rec["entity"], rec["ts_ms"]) for kind, rec in out if kind == "score")
    assert scored == good_keys
    assert set(good_keys.values()) == {1}
    assert [kind for kind, _ in out if kind == "late"] == []

    # Nothing else changed: scores and alerts equal a run over the good records alone.
    clean = run(good)
    assert [o for o in out if o[0] != "dead_letter"] == clean
    assert any(kind == "alert" for kind, _ in clean), "the spikes must alert for this to matter"


def test_every_bad_maker_really_produces_its_reason() -> None:
    # The generator itself is checked, so the acceptance test cannot pass vacuously.
    rng = random.Random(1)
    for reason, make in BAD.items():
        for _ in range(20):
            got = parse_line(make(rng), PARSE)
            assert not isinstance(got, Event)
            assert got.reason == reason
