"""The three inputs that used to stop or blind the job, through the real Flink job on a
MiniCluster: a timestamp of 5,000 digits, a host dated in 2099, and a URL template with an
unknown placeholder (at start-up and as a live change)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from job.config import load_config
from job.demo_data import incidents, write_demo
from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source
from tests import ROOT
from udfs.core.events import ParseConfig, parse_line
from udfs.core.replay import replay
from udfs.detect import score_row

pytestmark = pytest.mark.minicluster

DIGITS = '{"entity": "srv-3", "ts": "' + "1" * 5_000 + '", "metrics": {"cpu": 1}}'
WRONG_CLOCK = {"entity": "srv-1", "ts": "2099-01-01T00:00:00Z", "metrics": {"cpu": 50}}


def _ts(line: str) -> int:
    ts = parse_line(line, ParseConfig())
    assert not isinstance(ts, type(None))
    return int(ts.ts_ms)  # type: ignore[union-attr]


def _run(lines: list[str], tmp: Path, *sets: str) -> dict[str, list[dict[str, Any]]]:
    src = tmp / "input.jsonl"
    src.write_text("\n".join(lines) + "\n")
    cfg = load_config(None, ["sink.emit_scores=true", *sets])
    env = create_environment(cfg)
    control = None
    if cfg.source.control_path:
        control = file_source(env, cfg.source.control_path, "control")
    outputs = build_pipeline(env, cfg, file_source(env, str(src)), control)
    collect_to_files(outputs, tmp / "out", "test")
    return {
        name: [json.loads(x) for x in (tmp / "out" / f"{name}.jsonl").read_text().splitlines()]
        for name in ("alerts", "scores", "dead_letter", "late")
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("demo") / "input.jsonl"
    write_demo(path)
    return path.read_text().splitlines()


def test_a_5000_digit_timestamp_and_a_host_in_2099_neither_stop_nor_blind_the_job(
    demo: list[str], tmp_path: Path
) -> None:
    mid = len(demo) // 2
    lines = [*demo[:100], DIGITS, *demo[100:mid], json.dumps(WRONG_CLOCK), *demo[mid:]]
    got = _run(lines, tmp_path)

    dead = Counter((d["reason"], d["raw"]) for d in got["dead_letter"])
    assert dead[("bad_timestamp", DIGITS)] == 1
    [clock] = [d for d in got["dead_letter"] if d["reason"] == "clock_jump"]
    assert json.loads(clock["raw"])["ts"] == 4_070_908_800_000

    # Every alert and every score is the one of a run without the two bad lines (the replay
    # of the demo): srv-1's events after the wrong one included, none of them late.
    clean: dict[str, list[str]] = {"alert": [], "score": [], "late": []}
    for kind, rec in replay((parse_line(x, ParseConfig()) for x in demo), load_config().detector):
        if kind in clean:
            clean[kind].append(json.dumps(score_row(rec) if kind == "score" else rec, sort_keys=True))
    for name, kind in (("alerts", "alert"), ("scores", "score"), ("late", "late")):
        assert sorted(json.dumps(r, sort_keys=True) for r in got[name]) == sorted(clean[kind]), name
    opened = {(a["entity"], a["features"][0]["feature"].split(".")[0]) for a in got["alerts"]
              if a["kind"] == "open"}
    for incident in incidents():
        assert (incident["entity"], incident["metric"]) in opened, incident
    after = [s for s in got["scores"] if s["entity"] == "srv-1" and s["ts_ms"] > _ts(demo[mid])]
    assert len(after) > 2000


def test_a_bad_url_template_is_refused_at_start_up_naming_the_key(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "job", "run", "--input", str(tmp_path / "x.jsonl"), "--out",
         str(tmp_path / "out"), "--set", "detector.alerts.runbook_url=https://r/{host}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    assert "detector.alerts: runbook_url: template 'https://r/{host}' uses {host}" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_url_template_sent_live_is_a_bad_control_and_the_job_goes_on(
    demo: list[str], tmp_path: Path
) -> None:
    control = tmp_path / "control.jsonl"
    good = {"config_version": "2", "detector": {"alerts": {"runbook_url": "https://r/{entity}"}}}
    bad = {"config_version": "3", "detector": {"alerts": {"runbook_url": "https://r/{host}"}}}
    control.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    got = _run(demo, tmp_path, f"source.control_path={control}")
    [refused] = [d for d in got["dead_letter"] if d["reason"] == "bad_control"]
    assert "runbook_url" in refused["detail"] and "{host}" in refused["detail"]
    # The job went on, under the last good change once it arrived (a live change applies
    # when it reaches the operator: alerts say which version decided them).
    opened = [a for a in got["alerts"] if a["kind"] == "open"]
    assert {i["entity"] for i in incidents()} <= {a["entity"] for a in opened}
    live = [a for a in opened if a["config_version"] == "2"]
    assert live and all(a["runbook_url"] == f"https://r/{a['entity']}" for a in live)
    assert not [a for a in got["alerts"] if a["config_version"] == "3"]
