"""Tests of ``python -m job nab``: the detection core run over NAB files and scored.

They run the command on two NAB data files (an artificial one and a real one with repeated
timestamps) into a temporary folder. The NAB checkout is read from ``NAB_DIR`` (default
``/work/shared/data/nab``); the tests are skipped when it is absent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from job.cli import main
from job.config import load_config, to_plain
from tools.evaluation import nab_scoring as ns
from tools.evaluation.nab import DETECTOR_NAME, discover_files, label_rows

NAB_DIR = Path(os.environ.get("NAB_DIR", "/work/shared/data/nab"))
FILES = [
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
]
PROFILES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
OVERRIDE = "detector.features.max_gap_ms=86400000"

pytestmark = pytest.mark.skipif(
    not (NAB_DIR / "data").is_dir(), reason=f"no NAB checkout at {NAB_DIR} (set NAB_DIR)"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("nab")
    argv = ["nab", "--nab-dir", str(NAB_DIR), "--out", str(out), "--set", OVERRIDE]
    for f in FILES:
        argv += ["--files", f]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    assert code == 0
    return out, json.loads((out / "scores.json").read_text()), buf.getvalue()


def _result_file(out: Path, rel: str) -> Path:
    category, name = rel.split("/")
    return out / "results" / DETECTOR_NAME / category / f"{DETECTOR_NAME}_{name}"


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _windows() -> dict[str, list[list[str]]]:
    with open(NAB_DIR / "labels" / "combined_windows.json") as f:
        windows: dict[str, list[list[str]]] = json.load(f)
    return windows


@pytest.mark.parametrize("rel", FILES)
def test_result_files_have_nab_layout_and_one_row_per_data_row(
    run: tuple[Path, dict[str, Any], str], rel: str
) -> None:
    out, _, _ = run
    header, rows = _read_rows(_result_file(out, rel))
    data_header, data_rows = _read_rows(NAB_DIR / "data" / rel)
    assert header == ["timestamp", "value", "anomaly_score", "label"]
    assert data_header == ["timestamp", "value"]
    assert len(rows) == len(data_rows)
    assert [r[:2] for r in rows] == data_rows


@pytest.mark.parametrize("rel", FILES)
def test_anomaly_scores_lie_in_the_unit_interval_and_some_rows_are_scored(
    run: tuple[Path, dict[str, Any], str], rel: str
) -> None:
    out, _, _ = run
    _, rows = _read_rows(_result_file(out, rel))
    scores = [float(r[2]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) > 0.9


@pytest.mark.parametrize("rel", FILES)
def test_labels_are_one_exactly_inside_the_combined_windows(
    run: tuple[Path, dict[str, Any], str], rel: str
) -> None:
    out, _, _ = run
    _, rows = _read_rows(_result_file(out, rel))
    ts = pd.to_datetime([r[0] for r in rows])
    expected = [0] * len(rows)
    for start, end in _windows()[rel]:
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        for i, t in enumerate(ts):
            if lo <= t <= hi:
                expected[i] = 1
    assert [int(r[3]) for r in rows] == expected
    assert sum(expected) > 0


def test_scores_json_has_swept_and_alert_scores_for_every_profile(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, report, _ = run
    assert sorted(report["profiles"]) == sorted(PROFILES)
    assert report["files"] == len(FILES)
    assert report["full_corpus"] is False
    for name in PROFILES:
        entry = report["profiles"][name]
        swept = entry["swept"]
        # The sweep can always fall back to "never detect" (0), and nothing beats 100.
        assert 0.0 <= swept["score"] <= 100.0
        assert 0.0 <= swept["threshold"] <= ns.NO_DETECTION_THRESHOLD
        assert 0.0 <= entry["swept_ready_only"]["score"] <= 100.0
        for variant in ("alerts", "alerts_open", "is_alert"):
            score = entry[variant]["score"]
            # A fixed set of detections can lose without bound (false positives), never
            # beat the perfect detector.
            assert math.isfinite(score) and score <= 100.0


def test_swept_scores_equal_nab_scoring_of_the_written_result_files(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    out, report, _ = run
    corpus = ns.load_corpus(NAB_DIR)
    windows = ns.load_windows(NAB_DIR)
    bench = ns.NabBenchmark(
        {f: corpus[f]["timestamp"] for f in FILES},
        {f: windows[f] for f in FILES},
        ns.load_profiles(NAB_DIR),
    )
    scored = ns.score_results_dir(out / "results", bench, DETECTOR_NAME)
    for name in PROFILES:
        assert scored[name]["score"] == pytest.approx(report["profiles"][name]["swept"]["score"])
        # pandas' default CSV float parser may be off by one ulp from the value written.
        assert scored[name]["threshold"] == pytest.approx(
            report["profiles"][name]["swept"]["threshold"], rel=1e-12
        )


def test_scores_json_records_the_configuration_and_the_references(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, report, _ = run
    assert report["config"] == json.loads(
        json.dumps(to_plain(load_config(None, [OVERRIDE], "default")))
    )
    assert report["references"]["standard"]["windowedGaussian"] == pytest.approx(39.6, abs=0.05)
    assert report["references"]["standard"]["ARTime"] == pytest.approx(74.9, abs=0.05)


def test_the_command_prints_ours_beside_the_references_and_the_wall_time(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, _, printed = run
    assert f"{DETECTOR_NAME} swept threshold" in printed
    assert "Windowed Gaussian" in printed
    assert "wall time" in printed


def test_label_rows_includes_both_window_limits() -> None:
    ts = pd.date_range("2020-01-01", periods=6, freq="5min")
    assert label_rows(ts, [(ts[1], ts[3])]).tolist() == [0, 1, 1, 1, 0, 0]


def test_a_files_pattern_matching_nothing_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["nab", "--nab-dir", str(NAB_DIR), "--out", str(tmp_path), "--files", "nope/*.csv"])
    assert code == 2
    assert "no NAB data file matches" in capsys.readouterr().err
    assert discover_files(NAB_DIR, ["realKnownCause/nyc_*.csv"]) == ["realKnownCause/nyc_taxi.csv"]
