"""Tests of the NAB v1.1 scorer in ``tools.evaluation.nab_scoring``.

Synthetic, hand-checked cases run everywhere. The cases against published NAB results need
the NAB data: its directory is read from the environment variable ``NAB_DIR`` (default
``../shared/data/nab`` relative to the repository root) and they are skipped when absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests import ROOT
from tools.evaluation import nab_scoring as ns

NAB_DIR = Path(os.environ.get("NAB_DIR", ROOT.parent / "shared" / "data" / "nab"))
DETECTOR = "windowedGaussian"
PROFILES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]

# --------------------------------------------------------------------------------------------
# Synthetic corpus: "a/one.csv" has 1000 rows (probation = 150 rows) and one window on rows
# 400..499 (width 100); "a/quiet.csv" has 200 rows (probation = 30) and no window.
# --------------------------------------------------------------------------------------------
N_ROWS = 1000
LEFT, RIGHT = 400, 499
WIDTH = RIGHT - LEFT + 1
STANDARD = ns.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FN = ns.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)


def _timestamps(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2020-01-01", periods=n, freq="5min")


@pytest.fixture(scope="module")
def bench() -> ns.NabBenchmark:
    ts = _timestamps(N_ROWS)
    return ns.NabBenchmark(
        timestamps={"a/one.csv": ts, "a/quiet.csv": _timestamps(200)},
        windows={"a/one.csv": [(ts[LEFT], ts[RIGHT])], "a/quiet.csv": []},
        profiles={"standard": STANDARD, "reward_low_FN_rate": LOW_FN},
    )


def _alerts(*rows: int, quiet_rows: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    one = np.zeros(N_ROWS, dtype=bool)
    one[list(rows)] = True
    quiet = np.zeros(200, dtype=bool)
    quiet[list(quiet_rows)] = True
    return {"a/one.csv": one, "a/quiet.csv": quiet}


def _raw(bench: ns.NabBenchmark, *rows: int, profile: str = "standard") -> float:
    return ns.score_detections(_alerts(*rows), bench, profile).raw_score


def test_probation_is_15_percent_of_the_file_capped_at_750_rows() -> None:
    assert ns.probation_length(1000) == 150
    assert ns.probation_length(1001) == 150  # floor(150.15)
    assert ns.probation_length(4032) == 604
    assert ns.probation_length(5000) == 750
    assert ns.probation_length(22695) == 750


def test_scaled_sigmoid_matches_nab_reference_values() -> None:
    values = ns.scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.0001])
    expected = [0.98661, 0.84828, 0.0, -0.98661, 2 / (1 + math.exp(15)) - 1, -1.0]
    np.testing.assert_allclose(values, expected, atol=1e-5)


def test_detection_on_first_window_row_earns_the_full_tp_weight(bench: ns.NabBenchmark) -> None:
    # NAB divides the sigmoid by its value at the window's left edge, so this is exactly tpWeight.
    assert _raw(bench, LEFT) == pytest.approx(1.0, abs=1e-12)
    # Later detections earn less, the last row of the window S(-1/w)/S(-1) ~ 0.025.
    last = float(ns.scaled_sigmoid(-1 / WIDTH)[()] / ns.scaled_sigmoid(-1.0)[()])
    assert _raw(bench, RIGHT) == pytest.approx(last, abs=1e-12)
    assert 0 < _raw(bench, RIGHT) < _raw(bench, LEFT + 50) < _raw(bench, LEFT)


def test_missed_window_costs_the_fn_weight(bench: ns.NabBenchmark) -> None:
    assert _raw(bench) == pytest.approx(-1.0)
    assert _raw(bench, profile="reward_low_FN_rate") == pytest.approx(-2.0)


def test_false_positive_far_from_windows_costs_the_fp_weight(bench: ns.NabBenchmark) -> None:
    missed = -1.0
    # Before any window: the full FP weight.
    assert _raw(bench, 200) == pytest.approx(missed - 0.11, abs=1e-12)
    # More than three window widths after the window: the full FP weight too.
    assert _raw(bench, RIGHT + 3 * (WIDTH - 1) + 1) == pytest.approx(missed - 0.11, abs=1e-12)
    # In a file without windows: the full FP weight.
    quiet = ns.score_detections(_alerts(quiet_rows=(100,)), bench, "standard")
    assert quiet.per_file["a/quiet.csv"].score == pytest.approx(-0.11)


def test_false_positive_just_after_a_window_costs_little(bench: ns.NabBenchmark) -> None:
    # One row after the window: fpWeight * S(1 / (w - 1)), about -0.0028.
    expected = 0.11 * float(ns.scaled_sigmoid(1 / (WIDTH - 1))[()])
    assert _raw(bench, RIGHT + 1) - _raw(bench) == pytest.approx(expected, abs=1e-12)
    assert -0.11 < expected < 0
    # One window width after it: fpWeight * S(1) ~ -0.1085.
    one_width = _raw(bench, RIGHT + WIDTH - 1) - _raw(bench)
    assert one_width == pytest.approx(0.11 * -0.98661, abs=1e-5)


def test_only_the_earliest_detection_in_a_window_counts(bench: ns.NabBenchmark) -> None:
    first = _raw(bench, LEFT + 20)
    assert _raw(bench, LEFT + 20, LEFT + 50) == pytest.approx(first, abs=1e-12)
    assert _raw(bench, LEFT + 50, LEFT + 20, RIGHT) == pytest.approx(first, abs=1e-12)


def test_detections_in_the_probation_period_are_ignored(bench: ns.NabBenchmark) -> None:
    assert _raw(bench, *range(150)) == pytest.approx(_raw(bench))
    assert _raw(bench, 150) == pytest.approx(_raw(bench) - 0.11)  # first scored row
    counts = ns.score_detections(_alerts(*range(150)), bench, "standard").per_file["a/one.csv"]
    assert (counts.tp, counts.fp, counts.fn, counts.total) == (0, 0, WIDTH, N_ROWS - 150)


def test_window_inside_the_probation_period_is_neither_tp_nor_fn() -> None:
    ts = _timestamps(N_ROWS)
    bench = ns.NabBenchmark(
        {"f.csv": ts}, {"f.csv": [(ts[10], ts[20]), (ts[LEFT], ts[RIGHT])]}, {"s": STANDARD}
    )
    assert bench.null_score("s") == -1.0  # only the second window is scored
    never = ns.score_detections({"f.csv": np.zeros(N_ROWS, dtype=bool)}, bench, "s")
    assert never.raw_score == -1.0


def test_perfect_detector_normalises_to_100_and_null_detector_to_0(
    bench: ns.NabBenchmark,
) -> None:
    perfect = ns.normalised_scores_from_alerts(_alerts(LEFT), bench)
    null = ns.normalised_scores_from_alerts(_alerts(), bench)
    assert perfect == pytest.approx({"standard": 100.0, "reward_low_FN_rate": 100.0})
    assert null == pytest.approx({"standard": 0.0, "reward_low_FN_rate": 0.0})


def test_incremental_sweep_equals_rescoring_at_every_threshold(bench: ns.NabBenchmark) -> None:
    rng = np.random.default_rng(7)
    # Coarse scores so that many rows tie, as NAB detectors' outputs often do.
    scores = {
        "a/one.csv": np.round(rng.random(N_ROWS), 2),
        "a/quiet.csv": np.round(rng.random(200), 2),
    }
    scores["a/one.csv"][LEFT + 30] = 1.0
    for profile in ("standard", "reward_low_FN_rate"):
        curve = ns.threshold_curve(scores, bench, profile)
        assert curve["threshold"].iloc[0] == ns.NO_DETECTION_THRESHOLD
        assert curve["threshold"].is_monotonic_decreasing
        for row in curve.itertuples():
            direct = ns.score_at_threshold(scores, bench, profile, row.threshold)
            assert row.score == pytest.approx(direct.raw_score, abs=1e-9)
            assert row.tp == sum(f.tp for f in direct.per_file.values())
            assert row.fp == sum(f.fp for f in direct.per_file.values())
        best = ns.sweep(scores, bench, profile)
        assert best.raw_score == pytest.approx(curve["score"].max())
        assert best.threshold == curve["threshold"].iloc[int(curve["score"].argmax())]


def test_sweep_prefers_the_highest_threshold_among_equal_scores(bench: ns.NabBenchmark) -> None:
    # 0.9 hits the window's first row; 0.8 only adds later rows of the same window.
    one = np.zeros(N_ROWS)
    one[LEFT] = 0.9
    one[LEFT + 10 : LEFT + 20] = 0.8
    best = ns.sweep({"a/one.csv": one, "a/quiet.csv": np.zeros(200)}, bench, "standard")
    assert best == (0.9, pytest.approx(1.0), pytest.approx(100.0))


def test_window_limit_missing_from_the_data_is_rejected() -> None:
    ts = _timestamps(100)
    with pytest.raises(ValueError, match="not a timestamp"):
        ns.file_layout(ts, [(ts[10], ts[20] + pd.Timedelta("1min"))])


def test_corpus_mismatch_and_wrong_lengths_are_rejected(bench: ns.NabBenchmark) -> None:
    with pytest.raises(ValueError, match="missing files"):
        ns.score_detections({"a/one.csv": np.zeros(N_ROWS, dtype=bool)}, bench)
    bad = _alerts()
    bad["a/one.csv"] = bad["a/one.csv"][:-1]
    with pytest.raises(ValueError, match="expected 1000 rows"):
        ns.score_detections(bad, bench)


# --------------------------------------------------------------------------------------------
# Against the published NAB results of the windowedGaussian detector.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nab_dir() -> Path:
    if not (NAB_DIR / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"NAB data not found at {NAB_DIR}; set NAB_DIR to a NAB v1.1 checkout")
    return NAB_DIR


@pytest.fixture(scope="module")
def nab_bench(nab_dir: Path) -> ns.NabBenchmark:
    return ns.load_benchmark(nab_dir)


@pytest.fixture(scope="module")
def gaussian_scores(nab_dir: Path, nab_bench: ns.NabBenchmark) -> dict[str, np.ndarray]:
    return ns.load_detector_scores(nab_dir / "results", DETECTOR, nab_bench)


def _read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def test_loaders_read_the_whole_nab_corpus(nab_dir: Path, nab_bench: ns.NabBenchmark) -> None:
    corpus = ns.load_corpus(nab_dir)
    assert len(corpus) == 58
    taxi = corpus["realKnownCause/nyc_taxi.csv"]
    assert list(taxi.columns) == ["timestamp", "value"]
    assert pd.api.types.is_datetime64_any_dtype(taxi["timestamp"])
    assert set(ns.load_windows(nab_dir)) == set(corpus)
    assert ns.load_profiles(nab_dir)["reward_low_FP_rate"] == ns.CostMatrix(1.0, 0.22, 1.0)
    assert nab_bench.n_windows == nab_bench.n_scored_windows == 116


def test_sweep_reproduces_published_windowed_gaussian_results(
    nab_dir: Path, nab_bench: ns.NabBenchmark
) -> None:
    published = _read_json(nab_dir / "results" / "final_results.json")[DETECTOR]
    thresholds = _read_json(nab_dir / "config" / "thresholds.json")[DETECTOR]
    ours = ns.score_results_dir(nab_dir / "results", nab_bench, DETECTOR)
    assert set(ours) == set(PROFILES)
    for profile in PROFILES:
        assert ours[profile]["threshold"] == thresholds[profile]["threshold"], profile
        assert ours[profile]["score"] == pytest.approx(published[profile], abs=1e-6), profile
    # thresholds.json's raw "score" entries are not checked: they date from July 2016 and the
    # windowedGaussian result files were regenerated in September 2016 without updating them.


def test_per_file_scores_match_published_scores_at_the_published_threshold(
    nab_dir: Path, nab_bench: ns.NabBenchmark, gaussian_scores: dict[str, np.ndarray]
) -> None:
    for profile in PROFILES:
        table = pd.read_csv(nab_dir / "results" / DETECTOR / f"{DETECTOR}_{profile}_scores.csv")
        files = table[table["File"].notna()].set_index("File")
        threshold = float(files["Threshold"].iloc[0])
        ours = ns.score_at_threshold(gaussian_scores, nab_bench, profile, threshold)
        assert set(files.index) == set(ours.per_file)
        for path, row in files.iterrows():
            mine = ours.per_file[path]
            assert mine.score == pytest.approx(row["Score"], abs=1e-6), (profile, path)
            assert (mine.tp, mine.tn, mine.fp, mine.fn) == (
                row["TP"],
                row["TN"],
                row["FP"],
                row["FN"],
            ), (profile, path)
        totals = table[table["Detector"] == "Totals"].iloc[0]
        assert ours.raw_score == pytest.approx(totals["Score"], abs=1e-6)


def test_alerts_at_the_published_threshold_give_the_published_normalised_scores(
    nab_dir: Path, nab_bench: ns.NabBenchmark, gaussian_scores: dict[str, np.ndarray]
) -> None:
    published = _read_json(nab_dir / "results" / "final_results.json")[DETECTOR]
    alerts = {path: scores >= 1.0 for path, scores in gaussian_scores.items()}
    assert ns.normalised_scores_from_alerts(alerts, nab_bench) == pytest.approx(published, abs=1e-6)


def test_row_scores_match_published_false_positive_scores(
    nab_dir: Path, nab_bench: ns.NabBenchmark, gaussian_scores: dict[str, np.ndarray]
) -> None:
    # The published S(t) columns (NAB's pre-2019 scorer) hold each FP's score on its row.
    checked = 0
    for path, layout in nab_bench.layouts.items():
        category, name = path.split("/")
        frame = pd.read_csv(nab_dir / "results" / DETECTOR / category / f"{DETECTOR}_{name}")
        np.testing.assert_array_equal(frame["label"].to_numpy() == 1, layout.window_index >= 0)
        fp_rows = (gaussian_scores[path] >= 1.0) & layout.scorable & (layout.window_index < 0)
        for profile in PROFILES:
            published = frame[f"S(t)_{profile}"].to_numpy()[fp_rows]
            ours = layout.row_scores(nab_bench.profiles[profile])[fp_rows]
            np.testing.assert_allclose(ours, published, atol=1e-9, err_msg=f"{profile} {path}")
        checked += int(fp_rows.sum())
    assert checked == 409  # the published FP total at threshold 1.0
