"""The real job on a local Flink MiniCluster equals the replay oracle.

Each test runs the pipeline of :mod:`job.pipeline` (the same wiring `python -m job run`
uses) in this process's MiniCluster and compares every output with
:func:`udfs.core.replay.replay` on the same input: alerts, score records (floats included),
late events and dead letters, as multisets (arrival order between entities is free).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from job.config import JobConfig, load_config
from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source
from tests.configs import FAST
from udfs.core.events import DeadLetter, Event, ParseConfig, format_timestamp, parse_line
from udfs.core.replay import replay
from udfs.detect import score_row

pytestmark = pytest.mark.minicluster

T0 = 1_767_225_600_000
MIN = 60_000


def _stream(
    seed: int = 3, entities: int = 4, minutes: int = 600, pause: tuple[int, int] | None = None
) -> list[str]:
    """Several entities every 20 s, incidents, a shuffle within the bound, stragglers; with
    ``pause`` (from, to) in minutes, the last entity sends nothing in between."""
    rng = random.Random(seed)
    lines: list[str] = []
    for step in range(minutes * 3):
        ts = T0 + step * 20_000
        batch = []
        for e in range(entities):
            if pause and e == entities - 1 and pause[0] * 3 <= step < pause[1] * 3:
                continue
            cpu = 40 + 10 * (e % 2) + rng.gauss(0, 2)
            lat = 100 + rng.gauss(0, 5)
            if e == 1 and 300 * 3 <= step < 315 * 3:
                cpu += 45  # a 15-minute incident
            if e == 2 and 450 * 3 <= step < 470 * 3:
                lat *= 3
            batch.append(
                {
                    "entity": f"e{e}",
                    "ts": ts + rng.randrange(0, 3000),
                    "metrics": {"cpu": round(cpu, 3), "lat_ms": round(lat, 3)},
                }
            )
        rng.shuffle(batch)
        lines += [json.dumps(b) for b in batch]
        if step % 97 == 50:
            lines.append(
                json.dumps({"entity": "e0", "ts": ts - 10 * MIN, "metrics": {"cpu": 1.0}})
            )  # late
        if step % 113 == 7:
            lines.append('{"entity": "e3", "ts": "broken", "metrics": {"cpu": 1}}')
    return lines


def _disordered(
    seed: int = 21, entities: int = 3, steps: int = 4000
) -> tuple[list[str], list[str]]:
    """The same events in timestamp order and shuffled in blocks spanning at most 4 s.

    Each entity reports every 2 s, so inside a block an entity's events are at most 4 s out
    of order: within the default 5 s bound, none of them late.
    """
    rng = random.Random(seed)
    ordered = []
    for step in range(steps):
        for e in range(entities):
            spike = 30.0 if (e == 0 and 2500 <= step < 2600) else 0.0
            ev = {
                "entity": f"s{e}",
                "ts": T0 + step * 2000,
                "metrics": {"v": round(rng.gauss(10, 1) + spike, 4)},
            }
            ordered.append(json.dumps(ev))
    shuffled = []
    block = 3 * entities  # three timestamps of every entity: a 4 s span
    for i in range(0, len(ordered), block):
        chunk = ordered[i : i + block]
        rng.shuffle(chunk)
        shuffled += chunk
    return ordered, shuffled


def _replay_outputs(lines: list[str], cfg: JobConfig) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {
        "alerts": Counter(),
        "scores": Counter(),
        "late": Counter(),
        "dead_letter": Counter(),
        "drift": Counter(),
    }
    records = (parse_line(line, ParseConfig()) for line in lines)
    for kind, rec in replay(records, cfg.detector):
        if kind == "alert":
            out["alerts"][json.dumps(rec, sort_keys=True)] += 1
        elif kind == "score":
            out["scores"][json.dumps(score_row(rec, cfg.sink.emit_features), sort_keys=True)] += 1
        else:
            out[kind][json.dumps(rec, sort_keys=True)] += 1
    return out


def _run_job(lines: list[str], cfg: JobConfig, tmp: Path) -> dict[str, Counter[str]]:
    src = tmp / "input.jsonl"
    src.write_text("\n".join(lines) + "\n")
    env = create_environment(cfg)
    outputs = build_pipeline(env, cfg, file_source(env, str(src)))
    collect_to_files(outputs, tmp / "out", "test")
    return {
        name: Counter((tmp / "out" / f"{name}.jsonl").read_text().splitlines())
        for name in ("alerts", "scores", "late", "dead_letter", "drift")
    }


@pytest.fixture(scope="module")
def stream() -> list[str]:
    return _stream(pause=(200, 260))  # e3 silent for an hour: stale, then back


@pytest.mark.parametrize(
    ("mode", "parallelism", "backend", "cache"),
    [("thread", 1, "", 4096), ("thread", 2, "", 4096), ("process", 1, "", 4096),
     ("process", 2, "", 4096), ("thread", 2, "rocksdb", 1)],
)
def test_job_equals_replay_oracle(
    stream: list[str], tmp_path: Path, mode: str, parallelism: int, backend: str, cache: int
) -> None:
    # (RocksDB with a one-entity cache: most events are deferred to their release timer.)
    cfg = load_config(
        None,
        [
            *FAST,
            f"execution.mode={mode}",
            f"execution.parallelism={parallelism}",
            f"execution.state_backend={backend}",
            f"execution.state_cache_entities={cache}",
            "sink.emit_scores=true",
            "sink.emit_features=true",
        ],
    )
    expected = _replay_outputs(stream, cfg)
    got = _run_job(stream, cfg, tmp_path)
    # The input exercises every output, so equality below is not vacuous.
    assert sum(expected["scores"].values()) > 5000
    assert any('"kind": "open"' in a for a in expected["alerts"])
    assert expected["late"] and expected["dead_letter"]
    # e3's hour of silence is reported mid-stream (by the watch timer in Flink), then its return.
    health = sorted(
        (r["ts_ms"], r["entity"], r["check"])
        for r in map(json.loads, expected["drift"])
        if r["check"] in ("stale_entity", "entity_returned")
    )
    assert [h[1:] for h in health if h[0] < T0 + 599 * MIN] == [
        ("e3", "stale_entity"),
        ("e3", "entity_returned"),
    ]
    for name in ("alerts", "late", "dead_letter", "scores", "drift"):
        assert got[name] == expected[name], (
            f"{name} differ between Flink ({mode}, p={parallelism}, {backend or 'heap'}) and replay"
        )


def test_shuffled_arrival_within_the_bound_changes_no_alert_and_no_feature(tmp_path: Path) -> None:
    ordered, shuffled = _disordered()
    assert ordered != shuffled
    cfg = load_config(
        None, [*FAST, "execution.parallelism=2", "sink.emit_scores=true", "sink.emit_features=true"]
    )
    expected = _replay_outputs(ordered, cfg)
    assert _replay_outputs(shuffled, cfg) == expected
    got = _run_job(shuffled, cfg, tmp_path)
    assert any('"kind": "open"' in a for a in expected["alerts"])
    assert not got["late"]
    for name in ("alerts", "scores"):
        assert got[name] == expected[name], f"{name} depend on arrival order"


def test_incidents_open_alerts_for_the_right_entities(stream: list[str]) -> None:
    cfg = load_config(None, FAST)
    opened = [
        json.loads(a) for a in _replay_outputs(stream, cfg)["alerts"] if '"kind": "open"' in a
    ]
    entities = {(a["entity"], a["features"][0]["feature"].split(".")[0]) for a in opened}
    assert ("e1", "cpu") in entities
    assert ("e2", "lat_ms") in entities


# One record of each kind of bad input, with the dead-letter reason it must get.
MALFORMED = [
    ("{nope", "invalid_json"),
    ('{"entity": "", "ts": 1767225600000, "metrics": {"a": 1}}', "missing_entity"),
    ('{"entity": "x", "ts": "soon", "metrics": {"a": 1}}', "bad_timestamp"),
    ('{"entity": "x", "ts": 12, "metrics": {"a": 1}}', "absurd_timestamp"),
    ('{"entity": "x", "ts": 1767225600000, "metrics": {"a": "high"}}', "non_numeric_metric"),
    ('{"entity": "x", "ts": 1767225600000, "metrics": {"a": NaN}}', "non_finite_metric"),
    ('{"entity": "x", "ts": 1767225600000, "metrics": {}}', "no_metrics"),
    (
        '{"entity": "x", "ts": 1767225600000, "metrics": {"a": 1}, "pad": "'
        + "z" * 70_000
        + '"}',
        "oversized",
    ),
    ("[1, 2, 3]", "not_an_object"),
]


def test_flood_of_malformed_records_is_accounted_for(tmp_path: Path) -> None:
    """Thousands of bad records among good ones: each good one scored once, each bad one a dead letter."""
    rng = random.Random(11)
    good = _stream(seed=5, entities=2, minutes=240)
    lines: list[str] = []
    expected_reasons: Counter[str] = Counter()
    for line in good:
        lines.append(line)
        parsed = parse_line(line, ParseConfig())
        if isinstance(parsed, DeadLetter):
            expected_reasons[parsed.reason] += 1
        for _ in range(2):
            raw, reason = MALFORMED[rng.randrange(len(MALFORMED))]
            lines.append(raw)
            expected_reasons[reason] += 1
    cfg = load_config(None, [*FAST, "execution.parallelism=2", "sink.emit_scores=true"])
    got = _run_job(lines, cfg, tmp_path)
    reasons = Counter(json.loads(d)["reason"] for d in got["dead_letter"].elements())
    assert reasons == expected_reasons
    assert sum(expected_reasons.values()) > 2500
    # Good events: every one scored or late, exactly once, and the same as without the flood.
    clean = _replay_outputs(good, cfg)
    assert got["scores"] == clean["scores"]
    assert got["alerts"] == clean["alerts"]
    assert got["late"] == clean["late"]
    valid = sum(1 for line in good if isinstance(parse_line(line, ParseConfig()), Event))
    assert sum(got["scores"].values()) + sum(got["late"].values()) == valid


def _mixed_formats(seed: int = 9) -> list[str]:
    """The job's stream with a third of its timestamps as ISO-8601 strings and a third as
    strings of digits (so one entity's events come in every form), among bad lines of all
    kinds, including ones Flink's JSON functions read and the parser rejects."""
    lines = []
    for i, line in enumerate(_stream(seed=seed, entities=3, minutes=240)):
        obj = json.loads(line)
        if isinstance(obj["ts"], int) and i % 3:
            obj["ts"] = format_timestamp(obj["ts"]) if i % 3 == 1 else str(obj["ts"])
        lines.append(json.dumps(obj))
        if i % 50 == 0:
            ts = T0 + i * 1000
            iso = format_timestamp(ts)
            lines += [
                json.dumps({"entity": "  ", "ts": ts, "metrics": {"a": 1}}),
                json.dumps({"entity": 5, "ts": ts, "metrics": {"a": 1}}),
                json.dumps({"entity": "e0", "ts": ts, "metrics": {"a": 1}, "id": 1.5}),
                json.dumps({"entity": "e0", "ts": ts, "metrics": {"a": 1}}) + " trailing",
                json.dumps({"entity": None, "ts": ts, "metrics": {"a": 1}}),
                json.dumps([{"entity": "e0", "ts": ts, "metrics": {"a": 1}}]),
                json.dumps({"entity": "e0", "ts": iso, "metrics": {"a": True}}),
                json.dumps({"entity": "e0", "ts": iso.replace("T", "t"), "metrics": {"a": 1}}),
                # an entity that is not Unicode text (a lone surrogate): no Java string holds it
                json.dumps({"entity": "\ud800", "ts": ts, "metrics": {"a": 1}}),
                json.dumps({"entity": "\ud800", "ts": iso, "metrics": {"a": 1}}),
            ]
        if i % 71 == 3:  # duplicate keys: the last one counts, for Flink's JSON as for Python's
            obj = json.loads(line)
            metrics = json.dumps(obj["metrics"])
            lines.append(f'{{"entity": "nobody", "entity": "{obj["entity"]}", "ts": {obj["ts"] + 1}, "metrics": {metrics}}}')
    return lines


@pytest.mark.parametrize(("mode", "parallelism"), [("thread", 2), ("process", 1)])
def test_timestamps_in_every_form_give_the_replays_results(
    tmp_path: Path, mode: str, parallelism: int
) -> None:
    """However a line's timestamp is written, and whether or not the front (Flink SQL) can
    read it, the job's outputs are the replay's, dead letters included."""
    lines = _mixed_formats()
    cfg = load_config(
        None,
        [*FAST, f"execution.mode={mode}", f"execution.parallelism={parallelism}", "sink.emit_scores=true"],
    )
    expected = _replay_outputs(lines, cfg)
    got = _run_job(lines, cfg, tmp_path)
    iso = sum(1 for line in lines if '"ts": "20' in line)
    assert iso > 700 and sum(expected["scores"].values()) > 1500 and expected["alerts"]
    reasons = Counter(json.loads(d)["reason"] for d in expected["dead_letter"].elements())
    assert reasons["bad_entity"] > 40 and reasons["invalid_json"] > 10 and reasons["not_an_object"] > 10
    for name in ("alerts", "late", "dead_letter", "scores", "drift"):
        assert got[name] == expected[name], f"{name} differ between Flink ({mode}) and replay"
