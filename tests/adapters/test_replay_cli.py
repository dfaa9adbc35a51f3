"""``python -m job replay``: JSON lines or CSV in, scores.csv and the JSON-lines outputs out,
one score row per valid event, feature columns on request, clean errors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import ROOT

PYTHON = ROOT / ".venv" / "bin" / "python"
START = datetime(2026, 1, 1, tzinfo=UTC)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BASE_COLUMNS = ["entity", "timestamp", "anomaly_score", "threshold", "is_alert"]
OUTPUT_FILES = ("alerts.jsonl", "drift.jsonl", "dead_letter.jsonl", "late.jsonl")


def job(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(PYTHON) if PYTHON.exists() else sys.executable
    return subprocess.run(
        [exe, "-m", "job", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds, formatted by hand."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def epoch_ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def read_scores(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "scores.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """Two entities, 90 minutes at a 1-minute cadence, ts in several accepted forms, plus a
    malformed line, a blank line and a late event. Returns the file and the valid
    ``(entity, expected timestamp)`` pairs."""
    path = tmp_path_factory.mktemp("replay") / "events.jsonl"
    valid = []
    lines = []
    for minute in range(90):
        at = START + timedelta(minutes=minute)
        for entity, ts in (("srv-1", iso(at)), ("db-1", epoch_ms(at))):
            cpu = 40.0 + (minute * 7) % 5
            lines.append(
                json.dumps({"entity": entity, "ts": ts, "metrics": {"cpu": cpu, "mem": 2.0}})
            )
            valid.append((entity, iso(at)))
        if minute == 30:
            lines.append('{"entity": "srv-1", "ts": ')  # malformed
            lines.append("")  # blank: skipped
        if minute == 60:
            late = START + timedelta(minutes=50)
            lines.append(json.dumps({"entity": "db-1", "ts": iso(late), "metrics": {"cpu": 1.0}}))
    path.write_text("\n".join(lines) + "\n")
    return path, valid


def test_replay_writes_one_score_row_per_valid_event_and_every_output(
    events_file: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    path, valid = events_file
    out = tmp_path / "out"
    res = job("replay", "--input", str(path), "--out", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["scored"], summary["dead_letters"], summary["late"]) == (180, 1, 1)

    columns, rows = read_scores(out)
    assert columns[:5] == BASE_COLUMNS
    assert sorted((r["entity"], r["timestamp"]) for r in rows) == sorted(valid)
    for r in rows:
        assert ISO_UTC.match(r["timestamp"]), r["timestamp"]
        assert 0.0 <= float(r["anomaly_score"]) <= 1.0
        assert 0.0 <= float(r["threshold"]) <= 1.0
        assert r["is_alert"] in {"0", "1"}
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    [dead] = jsonl(out / "dead_letter.jsonl")
    assert dead["reason"] == "invalid_json" and dead["raw"] == '{"entity": "srv-1", "ts": '
    [late] = jsonl(out / "late.jsonl")
    assert (late["entity"], late["ts"]) == ("db-1", iso(START + timedelta(minutes=50)))
    assert not any(c.endswith(".zscore") for c in columns)


def test_emit_features_adds_metric_window_stat_columns(
    events_file: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    path, valid = events_file
    out = tmp_path / "out"
    res = job("replay", "--input", str(path), "--out", str(out), "--emit-features")
    assert res.returncode == 0, res.stderr
    columns, rows = read_scores(out)
    assert columns[:5] == BASE_COLUMNS
    for name in (
        "cpu.5m.zscore",
        "cpu.1m_1h.ratio",
        "cpu.1h.mean",
        "mem.24h.std",
    ):
        assert name in columns, name
    features = columns[columns.index("cpu.1m.mean") :]
    assert all(re.fullmatch(r"[a-z_]+\.(\w+\.\w+|delta|roc|dt)", c) for c in features), features
    assert len(rows) == len(valid)
    # 10 minutes in, srv-1's 5-minute window holds the 5 earlier values of cpu = 40 + 7m mod 5.
    row = next(
        r
        for r in rows
        if r["entity"] == "srv-1" and r["timestamp"] == iso(START + timedelta(minutes=10))
    )
    window = [40.0 + (m * 7) % 5 for m in range(5, 10)]
    assert float(row["cpu.5m.mean"]) == pytest.approx(sum(window) / 5, rel=1e-5)
    assert float(row["cpu.5m.count"]) == 5


def test_emit_features_has_columns_for_every_entitys_metrics(tmp_path: Path) -> None:
    path = tmp_path / "two.jsonl"
    lines = []
    for minute in range(10):
        ts = iso(START + timedelta(minutes=minute))
        lines.append(json.dumps({"entity": "a", "ts": ts, "metrics": {"cpu": 50.0 + minute % 3}}))
        lines.append(json.dumps({"entity": "b", "ts": ts, "metrics": {"disk": 5.0 + minute % 3}}))
    path.write_text("\n".join(lines) + "\n")
    res = job("replay", "--input", str(path), "--out", str(tmp_path / "out"), "--emit-features")
    assert res.returncode == 0, res.stderr
    columns, _ = read_scores(tmp_path / "out")
    assert "cpu.5m.zscore" in columns and "disk.5m.zscore" in columns


def test_nab_style_csv_with_one_entity_and_naive_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "nab.csv"
    rows_in = ["timestamp,value"]
    expected = []
    for i in range(40):
        at = datetime(2014, 4, 1, 0, 0) + timedelta(minutes=5 * i)
        value = "n/a" if i == 7 else "" if i == 9 else f"{10 + i % 4}.5"
        rows_in.append(f"{at:%Y-%m-%d %H:%M:%S},{value}")
        if i not in (7, 9):
            expected.append(iso(at.replace(tzinfo=UTC)))  # naive means UTC
    path.write_text("\n".join(rows_in) + "\n")
    out = tmp_path / "out"
    res = job(
        "replay",
        "--input",
        str(path),
        "--out",
        str(out),
        "--entity",
        "nyc_taxi",
        "--ts-column",
        "timestamp",
    )
    assert res.returncode == 0, res.stderr
    columns, rows = read_scores(out)
    assert columns[:5] == BASE_COLUMNS
    assert [r["timestamp"] for r in rows] == expected
    assert {r["entity"] for r in rows} == {"nyc_taxi"}
    reasons = [(d["reason"], d["field"]) for d in jsonl(out / "dead_letter.jsonl")]
    # A non-number names its column; an empty cell leaves the event without metrics.
    assert reasons == [("non_numeric_metric", "metrics.value"), ("no_metrics", "metrics")]


def test_csv_with_entity_column_and_chosen_metrics(tmp_path: Path) -> None:
    path = tmp_path / "hosts.csv"
    lines = ["ts,host,a,b,ignored"]
    for i in range(30):
        at = START + timedelta(minutes=i)
        for host in ("h1", "h2"):
            lines.append(f"{epoch_ms(at)},{host},{i % 5},{2 * (i % 3)},zzz")
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = job(
        "replay",
        "--input",
        str(path),
        "--out",
        str(out),
        "--entity-column",
        "host",
        "--ts-column",
        "ts",
        "--metrics",
        "a,b",
        "--emit-features",
    )
    assert res.returncode == 0, res.stderr
    columns, rows = read_scores(out)
    assert len(rows) == 60 and {r["entity"] for r in rows} == {"h1", "h2"}
    assert rows[0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert "a.5m.zscore" in columns and "b.1m_1h.ratio" in columns
    assert not any(c.startswith("ignored.") for c in columns)
    assert jsonl(out / "dead_letter.jsonl") == []


def test_missing_input_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    res = job("replay", "--input", str(missing), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0]
    assert "Traceback" not in res.stderr


def test_csv_without_an_entity_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("timestamp,value\n2014-04-01 00:00:00,1\n")
    res = job("replay", "--input", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--entity" in lines[0]
