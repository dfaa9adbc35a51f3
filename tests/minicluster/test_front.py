"""The job's front (job/pipeline.py ``front``): Flink SQL reads each line's entity and
timestamp in Java, to key the line and stamp it for the watermark. The detect operator parses
the line again in Python and is the judge; these tests hold the front to the parser: the same
entity for every line the parser accepts, the same timestamp for every form the front
promises to read, and 0 (no move of event time) for verdicts and for what it cannot read.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pyflink.java_gateway import get_gateway

from job.config import load_config
from job.pipeline import collection_source, create_environment, front, line_watermarks
from udfs.core.events import DeadLetter, Event, ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict

pytestmark = pytest.mark.minicluster

T0 = 1_767_225_600_000


def _iso_forms(rng: random.Random, n: int) -> list[str]:
    """ISO-8601 times of the form the front reads: date, ``T`` or space, time to the second,
    0 to 9 fraction digits, no offset, ``Z`` or ``+hh:mm`` / ``-hh:mm``; 2000 to 2100."""
    out = []
    start = datetime(2000, 1, 2, tzinfo=UTC)
    for _ in range(n):
        dt = start + timedelta(milliseconds=rng.randrange(0, 36_500 * 86_400_000))
        text = dt.strftime("%Y-%m-%d") + rng.choice("T ") + dt.strftime("%H:%M:%S")
        digits = rng.choice([0, 1, 2, 3, 6, 9])
        if digits:
            text += "." + "".join(rng.choice("0123456789") for _ in range(digits))
        text += rng.choice(["", "Z", "+00:00", "-00:00", "+05:30", "-03:00", "+14:00", "-11:45"])
        out.append(text)
    return out


# Times the parser reads and the front does not: scored exactly, without moving event time.
OTHER_FORMS = [
    "2026-01-01",
    "2026-01-01T00:00",
    "2026-01-01T00:00:00+0530",
    "2026-01-01T00:00:00,5Z",
    " 2026-01-01T00:00:00Z",
]


SECONDS = json.dumps({"entity": "srv-1", "ts": 1_767_225_600, "metrics": {"a": 1}})
NO_ENTITY = json.dumps({"ts": T0, "metrics": {"a": 1}})


def _lines(rng: random.Random) -> list[str]:
    lines = []
    entities = ["srv-1", "db/2", "aé😀", 'quote"d', "x" * 200]
    for i, ts in enumerate(_iso_forms(rng, 600) + OTHER_FORMS):
        lines.append(json.dumps({"entity": entities[i % 5], "ts": ts, "metrics": {"a": i}}))
    for i in range(200):
        ts = T0 + rng.randrange(0, 10**10)
        form = [ts, str(ts), float(ts)][i % 3]
        lines.append(json.dumps({"entity": entities[i % 5], "ts": form, "metrics": {"a": i}}))
    lines += [
        # verdicts never move event time; an event with a metric named "verdict" does
        json.dumps({"alert_id": "a1", "entity": "srv-1", "verdict": "false_positive", "ts": T0}),
        json.dumps({"alert_id": "a2", "entity": "srv-1", "verdict": "true_positive"}),
        json.dumps({"entity": "srv-1", "ts": T0 + 5, "metrics": {"verdict": 1}}),
        json.dumps({"entity": "srv-1", "ts": T0 + 6, "metrics": {"a": 1}, "verdict": "x"}),
        # bad lines: any key, timestamp 0 unless it reads as a plausible time
        SECONDS,
        NO_ENTITY,
        json.dumps([{"entity": "srv-1", "ts": T0, "metrics": {"a": 1}}]),
        "not json",
        "",
    ]
    return lines


def _front_rows(lines: list[str]) -> list[tuple[str, str, str, int]]:
    """(key, inner key, line, flink_ts) per line, as the front emits them."""
    cfg = load_config(None, ["execution.parallelism=1"])
    env = create_environment(cfg)
    stream = front(env, collection_source(env, lines), ParseConfig())
    with stream.execute_and_collect("front") as results:
        return [(r[0][0], r[0][1][0], r[0][1][1], r[1]) for r in results]


def test_the_front_reads_entities_and_timestamps_as_the_parser_does() -> None:
    lines = _lines(random.Random(4))
    rows = _front_rows(lines)
    # Every line, exactly once, with its key in front.
    assert Counter(line for _, _, line, _ in rows) == Counter(lines)
    assert all(key == inner for key, inner, _, _ in rows)
    moved = unmoved = 0
    for key, _, line, ts in rows:
        rec = parse_event_or_verdict(line, ParseConfig())
        if isinstance(rec, DeadLetter):
            continue
        assert key == rec.entity, line
        if isinstance(rec, Verdict):
            assert ts == 0, line
        else:
            assert isinstance(rec, Event)
            raw_ts = json.loads(line)["ts"]
            if isinstance(raw_ts, str) and any(raw_ts == f for f in OTHER_FORMS):
                assert ts == 0, line
                unmoved += 1
            else:
                assert ts == rec.ts_ms, line
                moved += 1
    assert moved == 600 + 200 + 2 and unmoved == len(OTHER_FORMS)
    # A line without a readable entity goes to key "" (no entity is ""), at timestamp 0
    # unless its timestamp reads: the seconds are outside the plausible range.
    by_line = {line: (key, ts) for key, _, line, ts in rows}
    assert by_line["not json"] == ("", 0)
    assert by_line[NO_ENTITY] == ("", T0)
    assert by_line[SECONDS] == ("srv-1", 0)


def test_the_kafka_sources_watermarks_read_event_time_as_the_front_does() -> None:
    """The Kafka source makes the watermarks per partition from the raw lines, in Java
    (``LineWatermarks``, job/pipeline.py ``line_watermarks``), apart from the front that stamps
    the records: for every line both read the same event time (0: none), and the same entity
    when there is one."""
    extra = [
        json.dumps({"entity": 42, "ts": T0 + 7, "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": T0 + 0.5, "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": 1.767225600001e12, "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": None, "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": [T0], "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": "2026-13-01T00:00:00Z", "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": -5, "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": f" {T0}", "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": f"+{T0}", "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": f"{T0}.5", "metrics": {"a": 1}}),
        json.dumps({"entity": "srv-1", "ts": f"{T0} ", "metrics": {"a": 1}}),
        '{"entity": "srv-1", "ts": 1767225600000, "metrics": ',
    ]
    lines = _lines(random.Random(5)) + extra
    rows = _front_rows(lines)
    cfg = load_config(None, ["execution.parallelism=1"])
    assert line_watermarks(create_environment(cfg), cfg) is not None, "make native builds the jar"
    parse = ParseConfig()
    reader = getattr(get_gateway().jvm.flinkanomaly, "LineWatermarks$LineTime")(
        int(parse.min_ts_ms), int(parse.max_ts_ms)
    )
    timed = 0
    for key, _, line, ts in rows:
        assert reader.read(line) == (ts > 0), line
        assert reader.ts() == ts, line
        if ts > 0:
            assert reader.entity() == key, line
            timed += 1
    assert timed > 700
