"""``python -m job eval`` end to end on the three benchmarks (``DATA_DIR``, default the folder
holding ``NAB_DIR``): it writes its dated results, leaves the README alone when writing
elsewhere, and the default detector clears the bars it is held to on every benchmark."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from job.cli import main
from tests import ROOT

DATA = Path(
    os.environ.get("DATA_DIR", Path(os.environ.get("NAB_DIR", ROOT.parent / "shared" / "data" / "nab")).parent)
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval")
    readme = (ROOT / "README.md").read_text()
    argv = ["eval", "--data", str(DATA), "--out", str(out), "--no-ablation", "--no-progress"]
    assert main(argv) == 0
    assert (ROOT / "README.md").read_text() == readme
    stem = dt.date.today().isoformat()
    assert (out / f"{stem}.md").read_text().startswith(f"# Detection quality, {stem}")
    rep: dict[str, Any] = json.loads((out / f"{stem}.json").read_text())
    return rep


def test_nab_scores_above_random_cut_forest_with_the_sweep_and_with_the_jobs_own_alerts(
    report: dict[str, Any],
) -> None:
    nab = report["results"]["nab"]
    assert nab["files"] == 58
    assert nab["sweep"]["standard"] >= 55.0
    assert nab["alerts"]["standard"] >= 50.0
    assert nab["sweep"]["standard"] - nab["alerts"]["standard"] <= 5.0  # alerts follow the score


def test_asd_ranks_and_alerts_on_the_anomaly_windows(report: dict[str, Any]) -> None:
    asd = report["results"]["asd"]
    assert asd["roc_auc_mean"] >= 0.75
    assert asd["alerts"]["recall"] >= 0.40 and asd["alerts"]["precision"] >= 0.40


def test_skab_is_scored_after_its_first_rows_whatever_its_cadence(report: dict[str, Any]) -> None:
    skab = report["results"]["skab"]
    assert skab["roc_auc_mean"] >= 0.80
    assert skab["alerts"]["windows_caught"] > skab["alerts"]["windows"] / 2


def test_drift_and_health_records_are_rare_on_unlabelled_stretches(report: dict[str, Any]) -> None:
    # Fewer than one record per entity every two days on the server metrics.
    for name in ("nab", "asd"):
        assert report["results"][name]["records"]["per_entity_day"] < 0.5, name
