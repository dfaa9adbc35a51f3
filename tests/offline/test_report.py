"""The HTML report of a run: the demo stream replayed, then ``tools.report``.

One replay of the full 3-day demo (the incidents are on days 2 and 3) is shared by the
module; each report is rendered from it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from job.demo_data import ENTITIES, write_demo
from job.io import read_records, write_replay
from tools.report import build_report, main
from udfs.core.config import DetectorConfig
from udfs.core.events import ParseConfig, parse_timestamp

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    write_demo(run / "input.jsonl")  # where `python -m job demo` leaves it: found by default
    write_replay(
        read_records(run / "input.jsonl", ParseConfig()), DetectorConfig(), run, progress=False
    )
    return run


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    build_report(run_dir, out)
    return out


def _alert_ids(run_dir: Path) -> set[str]:
    lines = (run_dir / "alerts.jsonl").read_text().splitlines()
    return {json.loads(line)["alert_id"] for line in lines}


def test_index_references_every_entity_and_every_alert(run_dir: Path, report: Path) -> None:
    page = (report / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for entity in ENTITIES:
        assert f'id="entity-{entity}"' in page
        assert f"<h2>{entity}</h2>" in page
    ids = _alert_ids(run_dir)
    assert len(ids) >= 3  # at least the three incidents
    for aid in ids:
        assert f'<tr id="alert-{aid}">' in page
    assert page.count('<tr id="alert-') == len(ids)
    # The explanation and the runbook of an alert are in its row.
    lines = (run_dir / "alerts.jsonl").read_text().splitlines()
    tops = {json.loads(x)["features"][0]["feature"] for x in lines if '"kind": "open"' in x}
    assert tops and all(f in page for f in tops)
    assert 'href="https://runbooks.example.com/anomaly?entity=srv-4"' in page
    # The summary: dead letters and late events of the demo stream.
    dead = len((run_dir / "dead_letter.jsonl").read_text().splitlines())
    late = len((run_dir / "late.jsonl").read_text().splitlines())
    assert f'<div class="k">dead letters</div><div class="v">{dead:,}</div>' in page
    assert f'<div class="k">late events</div><div class="v">{late:,}</div>' in page


def test_page_is_self_contained(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(ENTITIES)
    assert "<script" not in page
    for attr in ('src="http', "src='http", 'href="//', "@import", "url("):
        assert attr not in page


def test_pngs_are_real_non_blank_charts(report: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    for entity in ENTITIES:
        png = report / f"{entity}.png"
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 20_000
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 500 and img.shape[1] > 1000
        rgb = img[..., :3]
        assert float(rgb.var()) > 0.005
        px = (rgb * 255).astype(np.uint32).reshape(-1, 3)
        colors = np.unique((px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2])
        assert len(colors) > 100


def test_output_is_deterministic(run_dir: Path, report: Path, tmp_path: Path) -> None:
    build_report(run_dir, tmp_path)
    for f in sorted(report.iterdir()):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


def test_scores_jsonl_of_the_flink_job_and_entity_filter(run_dir: Path, tmp_path: Path) -> None:
    """A run folder of the Flink job: scores.jsonl instead of scores.csv, input elsewhere."""
    job_run = tmp_path / "job"
    job_run.mkdir()
    for name in ("alerts.jsonl", "drift.jsonl", "dead_letter.jsonl", "late.jsonl"):
        shutil.copy(run_dir / name, job_run / name)
    # Records as udfs/core/drift.py writes them (no ts of their own: the end of the current
    # window), one drift and one health check, so that their marks and table are drawn.
    noon = parse_timestamp("2026-01-02T12:00:00Z")
    assert noon is not None
    span = {"from_ts": noon - 3_600_000, "to_ts": noon, "events": 60}
    drift = [
        {
            "entity": "db-1",
            "type": "drift",
            "feature": "latency_ms",
            "statistic": "psi",
            "value": 0.51,
            "threshold": 0.2,
            "action": "report",
            "reference": span,
            "current": span,
        },
        {
            "entity": "db-1",
            "type": "health",
            "check": "silent_detector",
            "feature": "score",
            "value": 3000,
            "threshold": 2880,
            "current": span,
        },
    ]
    (job_run / "drift.jsonl").write_text("".join(json.dumps(d) + "\n" for d in drift))
    with open(run_dir / "scores.csv", newline="") as f, open(job_run / "scores.jsonl", "w") as out:
        for row in csv.DictReader(f):
            rec = {
                "entity": row["entity"],
                "ts_ms": parse_timestamp(row["timestamp"]),
                "anomaly_score": float(row["anomaly_score"]),
                "threshold": float(row["threshold"]),
                "is_alert": row["is_alert"] in ("1", "True"),
                "ready": row["ready"] in ("1", "True"),
                "raw": {k[4:]: float(v) for k, v in row.items() if k.startswith("raw_") and v},
            }
            out.write(json.dumps(rec) + "\n")
    out_dir = tmp_path / "rep"
    res = build_report(job_run, out_dir, input_path=run_dir / "input.jsonl", entities=["db-1"])
    assert res["charted"] == 1 and res["entities"] == len(ENTITIES)
    assert sorted(p.name for p in out_dir.iterdir()) == ["db-1.png", "index.html"]
    page = (out_dir / "index.html").read_text()
    assert "scores from <code>scores.jsonl</code>" in page
    assert '<div class="k">drift records</div><div class="v">2</div>' in page
    assert "<h2>Drift and health</h2>" in page and "silent_detector" in page
    assert "2026-01-02 12:00:00" in page  # placed at the end of the current window


def test_missing_run_or_scores_is_one_line_naming_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: run folder not found")
    assert "python -m job replay" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--run", str(empty), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "scores.csv" in err and "python -m job replay" in err


def test_unknown_entity_is_an_error(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--run", str(run_dir), "--out", str(tmp_path), "--entity", "nope"]) == 2
    err = capsys.readouterr().err
    assert "entity not in scores.csv: nope" in err and "srv-1" in err
