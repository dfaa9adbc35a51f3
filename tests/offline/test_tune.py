"""``tools.tune`` on the demo stream: alert counts by threshold, and the injected incidents
found at the default one.

The labels are written here from what the demo stream is documented to contain (three
incidents, at day 1 + 900 min, day 2 + 200 min and day 2 + 660 min, lasting 30, 45 and 20
minutes), not taken from the code under test; the expectations are computed from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from job.config import load_config
from job.demo_data import write_demo
from tools.tune import load_labels, main, tune

DAY_MIN = 1440
T0 = "2026-01-01T00:00:00Z"
T0_MS = 1_767_225_600_000
RARITIES = (1.25, 1.75, 2.5, 3.5)
SLACK_MS = 10 * 60_000


def _iso(minute: int) -> str:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# (entity, start minute, minutes): the README and job/demo_data.py docstring.
INCIDENTS = [
    ("srv-2", DAY_MIN + 900, 30),
    ("db-1", 2 * DAY_MIN + 200, 45),
    ("srv-4", 2 * DAY_MIN + 660, 20),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "input.jsonl"
    write_demo(path)
    return path


@pytest.fixture(scope="module")
def labels_file(demo: Path) -> Path:
    labels: list[dict[str, Any]] = []
    for i, (entity, start, minutes) in enumerate(INCIDENTS):
        # ISO for some, epoch ms for another: both are accepted.
        end: Any = _iso(start + minutes) if i != 1 else T0_MS + (start + minutes) * 60_000
        labels.append({"entity": entity, "start": _iso(start), "end": end})
    path = demo.parent / "labels.json"
    path.write_text(json.dumps(labels))
    return path


@pytest.fixture(scope="module")
def sweep(demo: Path, labels_file: Path) -> dict[str, Any]:
    cfg = load_config(profile="default")
    return tune(demo, cfg, RARITIES, load_labels(str(labels_file)), workers=2)


def test_higher_thresholds_never_give_more_alerts(sweep: dict[str, Any]) -> None:
    rows = sweep["rows"]
    assert sweep["knob"] == "rarity"
    assert [r["rarity"] for r in rows] == sorted(RARITIES)
    opened = [r["alerts_opened"] for r in rows]
    assert all(a >= b for a, b in zip(opened, opened[1:], strict=False)), opened
    assert opened[0] > opened[-1]
    for r in rows:
        assert sum(r["per_entity"].values()) == r["alerts_opened"]
        assert r["per_entity_per_day_max"] >= r["per_entity_per_day_mean"]
    assert sweep["events_scored"] == 5 * 3 * DAY_MIN
    assert sweep["days"] == pytest.approx(3.0)


def test_every_demo_incident_is_found_at_the_default_threshold(sweep: dict[str, Any]) -> None:
    (row,) = [r for r in sweep["rows"] if r["configured"]]
    assert row["rarity"] == 1.75
    # Independently of tune's scoring: each incident has an episode of its entity opening
    # inside [start - slack, end].
    for entity, start, minutes in INCIDENTS:
        lo = T0_MS + start * 60_000 - SLACK_MS
        hi = T0_MS + (start + minutes) * 60_000
        assert any(a["entity"] == entity and lo <= a["ts_ms"] <= hi for a in row["opens"]), entity
    assert row["recall"] == 1.0
    assert row["incidents_found"] == len(INCIDENTS)
    tp = sum(
        1
        for a in row["opens"]
        if any(
            a["entity"] == e
            and T0_MS + (s * 60_000) - SLACK_MS <= a["ts_ms"] <= T0_MS + (s + m) * 60_000
            for e, s, m in INCIDENTS
        )
    )
    assert row["tp_episodes"] == tp
    assert row["precision"] == pytest.approx(tp / row["alerts_opened"])
    p, r = row["precision"], row["recall"]
    assert row["f1"] == pytest.approx(2 * p * r / (p + r))


def test_demo_labels_are_the_documented_incidents(labels_file: Path) -> None:
    ours = [(x["entity"], x["start_ms"], x["end_ms"]) for x in load_labels(str(labels_file))]
    assert [(x["entity"], x["start_ms"], x["end_ms"]) for x in load_labels("demo")] == ours
    assert ours[0][1] == T0_MS + (DAY_MIN + 900) * 60_000
    assert _iso(0) == T0


def test_bad_labels_name_the_item(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"entity": "a", "start": "2026-01-01T00:00:00Z", "end": "soon"}]))
    with pytest.raises(ValueError, match=r"\[0\]\.end"):
        load_labels(str(bad))
    bad.write_text(json.dumps([{"entity": "a", "start": 2000, "end": 1000}]))
    with pytest.raises(ValueError, match="end is before start"):
        load_labels(str(bad))
    with pytest.raises(FileNotFoundError):
        load_labels(str(tmp_path / "missing.json"))


def test_command_prints_a_table_and_writes_json(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tune.json"
    argv = ["--input", str(demo), "--labels", "demo", "--rarities", "1.75,3", "--limit", "3000"]
    assert main([*argv, "--workers", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "threshold" in text and "recall" in text and "1.75 *" in text
    res = json.loads(out.read_text())
    assert [r["rarity"] for r in res["rows"]] == [1.75, 3.0]
    assert res["limit"] == 3000 and res["events_scored"] <= 3000
    # --set reaches the detector: the configured rate is marked, and rates are swept.
    assert (
        main(
            [
                *argv[:-4],
                "--rates",
                "0.002",
                "--limit",
                "500",
                "--set",
                "detector.threshold.target_alert_rate=0.002",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "target rate" in text and "0.002 *" in text
    assert main(["--input", str(demo), "--rates", "abc"]) == 2
    assert "--rates" in capsys.readouterr().err
