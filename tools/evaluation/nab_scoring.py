"""Scorer for the Numenta Anomaly Benchmark (NAB v1.1).

This module re-implements NAB's scoring rules (``nab/sweeper.py``, ``nab/scorer.py``,
``nab/optimizer.py`` and the normalisation step of ``nab/runner.py`` in the numenta/NAB
repository) with numpy and pandas only, so that detectors of this project can be scored
against the published NAB leaderboard without NAB's own runner.

Rules, per data file of ``n`` rows:

* **Probation.** Rows ``i < min(floor(0.15 * n), 0.15 * 5000)`` are not scored at all:
  detections there are ignored, and a window lying wholly inside is neither a TP nor a FN.
* **Windows.** Every labelled window is scored once. If it holds no detection it costs
  ``-fnWeight``. Otherwise it earns the largest per-row score among its detections, which
  is the earliest one: a detection at row ``i`` of a window spanning rows ``[l, r]``
  (width ``w = r - l + 1``) earns ``tpWeight * S(-(r - i + 1) / w) / S(-1)`` with the
  scaled sigmoid ``S(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` for ``x > 3``). So a detection on
  the first row of a window earns exactly ``tpWeight``, one on its last row about
  ``2.5 * tpWeight / w``.
* **False positives.** Every detection outside the windows adds ``fpWeight * S(x)``, which is
  negative. Before the file's first window ``x`` is taken as "far away" (``S = -1``); after a
  window of width ``w`` ending at row ``r``, ``x = (i - r) / (w - 1)``, so a detection just
  after a window costs almost nothing and one more than three window widths after it costs
  the whole ``fpWeight``.
* **Threshold sweep.** A detector outputs an anomaly score per row; row ``i`` is a detection
  when ``score_i >= threshold``. One threshold is chosen for the whole corpus: the one whose
  total raw score is largest (ties go to the highest threshold, as NAB's stable sort does).
* **Normalisation.** ``100 * (raw - null) / (perfect - null)``, where ``null`` is the score of
  the detector that never detects (``-fnWeight`` per scored window) and ``perfect`` is
  ``tpWeight`` times the number of labelled windows (a detection on the first row of every
  window).

The sweep is NAB's incremental one: the scored rows of the whole corpus are sorted once by
anomaly score, and the total score after each row is obtained from a cumulative sum (false
positives) and a per-window running maximum (windows), so every candidate threshold is
evaluated in ``O(N log N)`` overall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tools.evaluation.nab_corpus import (
    NO_DETECTION_THRESHOLD,
    PROBATION_PERCENT,
    BenchmarkLike,
    CorpusScore,
    CostMatrix,
    FileLayout,
    FileScore,
    FloatArray,
    NabBenchmark,
    PathLike,
    SweepResult,
    as_benchmark,
    file_layout,
    load_benchmark,
    load_corpus,
    load_profiles,
    load_windows,
    probation_length,
    scaled_sigmoid,
)

__all__ = [
    "NO_DETECTION_THRESHOLD",
    "PROBATION_PERCENT",
    "CorpusScore",
    "CostMatrix",
    "FileLayout",
    "FileScore",
    "NabBenchmark",
    "SweepResult",
    "file_layout",
    "load_benchmark",
    "load_corpus",
    "load_detector_scores",
    "load_profiles",
    "load_windows",
    "normalised_scores_from_alerts",
    "probation_length",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_detections",
    "score_results_dir",
    "sweep",
    "threshold_curve",
]

def _check_files(bench: NabBenchmark, given: Mapping[str, object]) -> None:
    missing = sorted(set(bench.layouts) - set(given))
    unknown = sorted(set(given) - set(bench.layouts))
    if missing or unknown:
        raise ValueError(f"corpus mismatch: missing files {missing}, unknown files {unknown}")


def _check_rows(bench: NabBenchmark, path: str, arr: npt.NDArray[Any]) -> None:
    n = bench.layouts[path].n_rows
    if arr.shape != (n,):
        raise ValueError(f"{path}: expected {n} rows, got shape {arr.shape}")


def _as_bools(bench: NabBenchmark, path: str, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values, dtype=np.bool_)
    _check_rows(bench, path, arr)
    return arr


def _as_floats(bench: NabBenchmark, path: str, values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    _check_rows(bench, path, arr)
    return arr


def _profile_name(profile: str | CostMatrix) -> str:
    return profile if isinstance(profile, str) else "custom"


def _score_file(
    layout: FileLayout, detections: npt.NDArray[np.bool_], cost: CostMatrix
) -> FileScore:
    scorable = layout.scorable
    det = detections & scorable
    in_window = layout.window_index >= 0
    s = layout.row_scores(cost)
    fp_mask = det & ~in_window
    best = np.full(layout.n_windows, -cost.fn_weight)
    tp_mask = det & in_window
    np.maximum.at(best, layout.window_index[tp_mask], s[tp_mask])
    score = float(s[fp_mask].sum() + best[layout.scored_windows].sum())
    tp = int(tp_mask.sum())
    fp = int(fp_mask.sum())
    fn = int((scorable & in_window).sum()) - tp
    tn = int((scorable & ~in_window).sum()) - fp
    return FileScore(score, tp, tn, fp, fn, tp + tn + fp + fn)


def score_detections(
    corpus_detections: Mapping[str, npt.ArrayLike],
    nab_dir: BenchmarkLike,
    profile: str | CostMatrix = "standard",
) -> CorpusScore:
    """Score binary detections of every corpus file under one profile.

    Parameters
    ----------
    corpus_detections : mapping of str to array_like of bool
        Per relative path, one boolean per row of the data file (``True`` = alert). Must
        cover exactly the files of the corpus.
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.
    profile : str or CostMatrix, optional
        Profile name from ``config/profiles.json``, or explicit weights.

    Returns
    -------
    CorpusScore
        Per-file raw scores and counts, the raw total and the normalised total.
    """
    bench = as_benchmark(nab_dir)
    _check_files(bench, corpus_detections)
    cost = bench.cost(profile)
    per_file = {
        path: _score_file(layout, _as_bools(bench, path, corpus_detections[path]), cost)
        for path, layout in bench.layouts.items()
    }
    raw = math.fsum(fs.score for fs in per_file.values())
    return CorpusScore(_profile_name(profile), raw, bench.normalise(raw, cost), per_file)


def score_at_threshold(
    corpus_scores: Mapping[str, npt.ArrayLike],
    nab_dir: BenchmarkLike,
    profile: str | CostMatrix,
    threshold: float,
) -> CorpusScore:
    """Score anomaly scores at a fixed threshold (detection when ``score >= threshold``).

    This is what NAB's scoring step does with the threshold the optimiser found.

    Parameters
    ----------
    corpus_scores : mapping of str to array_like of float
        Per relative path, the detector's anomaly score for every row.
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.
    profile : str or CostMatrix
        Profile name or weights.
    threshold : float
        Detection threshold.

    Returns
    -------
    CorpusScore
        As :func:`score_detections`.
    """
    detections = {
        path: np.asarray(scores, dtype=np.float64) >= threshold
        for path, scores in corpus_scores.items()
    }
    return score_detections(detections, nab_dir, profile)


def threshold_curve(
    corpus_scores: Mapping[str, npt.ArrayLike],
    nab_dir: BenchmarkLike,
    profile: str | CostMatrix = "standard",
) -> pd.DataFrame:
    """Total raw score of the corpus at every distinct threshold (NAB's sweep).

    Parameters
    ----------
    corpus_scores : mapping of str to array_like of float
        Per relative path, the detector's anomaly score for every row (no NaN).
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.
    profile : str or CostMatrix, optional
        Profile name or weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``threshold, score, tp, tn, fp, fn, total``, one row per candidate
        threshold in decreasing order, like NAB's ``calcScoreByThreshold``: the first row is
        "no detection" (threshold 1.1, or just above the largest score if that exceeds 1.1),
        then every distinct anomaly score of the scored rows.
    """
    bench = as_benchmark(nab_dir)
    _check_files(bench, corpus_scores)
    cost = bench.cost(profile)
    score_parts: list[FloatArray] = []
    sweep_parts: list[FloatArray] = []
    window_parts: list[npt.NDArray[np.int64]] = []
    offset = 0
    for path, layout in bench.layouts.items():
        scores = _as_floats(bench, path, corpus_scores[path])
        keep = layout.scorable
        score_parts.append(scores[keep])
        sweep_parts.append(layout.row_scores(cost)[keep])
        wid = layout.window_index[keep]
        window_parts.append(np.where(wid >= 0, wid + offset, -1))
        offset += layout.n_windows
    anomaly = np.concatenate(score_parts) if score_parts else np.empty(0)
    if np.isnan(anomaly).any():
        raise ValueError("anomaly scores contain NaN")
    order = np.argsort(-anomaly, kind="stable")
    anomaly = anomaly[order]
    sweep_score = np.concatenate(sweep_parts)[order] if sweep_parts else np.empty(0)
    window = np.concatenate(window_parts)[order] if window_parts else np.empty(0, np.int64)

    # Change of the total score as each row (in decreasing anomaly score) becomes a
    # detection: a FP adds its own score; a window row raises the window's running max.
    in_window = window >= 0
    delta = np.where(in_window, 0.0, sweep_score)
    idx = np.flatnonzero(in_window)
    if idx.size:
        groups = pd.Series(np.maximum(sweep_score[idx], -cost.fn_weight)).groupby(window[idx])
        running = groups.cummax()
        previous = running.groupby(window[idx]).shift(1, fill_value=-cost.fn_weight)
        delta[idx] = (running - previous).to_numpy()
    null = bench.null_score(cost)
    total = null + np.cumsum(delta)
    tp = np.cumsum(in_window)
    fp = np.cumsum(~in_window)
    n_in = int(in_window.sum())
    n_out = len(window) - n_in

    ends = np.flatnonzero(np.r_[anomaly[1:] != anomaly[:-1], anomaly.size > 0])
    top = NO_DETECTION_THRESHOLD
    if anomaly.size and anomaly[0] >= top:
        top = float(np.nextafter(anomaly[0], np.inf))
    tp_e = np.r_[0, tp[ends]].astype(np.int64)
    fp_e = np.r_[0, fp[ends]].astype(np.int64)
    return pd.DataFrame(
        {
            "threshold": np.r_[top, anomaly[ends]],
            "score": np.r_[null, total[ends]],
            "tp": tp_e,
            "tn": n_out - fp_e,
            "fp": fp_e,
            "fn": n_in - tp_e,
            "total": np.full(len(tp_e), len(window), dtype=np.int64),
        }
    )


def sweep(
    corpus_scores: Mapping[str, npt.ArrayLike],
    nab_dir: BenchmarkLike,
    profile: str | CostMatrix = "standard",
) -> SweepResult:
    """Find the corpus-wide threshold with the largest total raw score (NAB's optimiser).

    Parameters
    ----------
    corpus_scores : mapping of str to array_like of float
        Per relative path, the detector's anomaly score for every row of the data file.
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.
    profile : str or CostMatrix, optional
        Profile name or weights.

    Returns
    -------
    SweepResult
        ``(threshold, raw_score, normalised_score)``; among equal scores the highest
        threshold wins, as in NAB.
    """
    bench = as_benchmark(nab_dir)
    curve = threshold_curve(corpus_scores, bench, profile)
    best = int(np.argmax(curve["score"].to_numpy()))
    raw = float(curve["score"].iloc[best])
    return SweepResult(float(curve["threshold"].iloc[best]), raw, bench.normalise(raw, profile))


def normalised_scores_from_alerts(
    corpus_detections: Mapping[str, npt.ArrayLike], nab_dir: BenchmarkLike
) -> dict[str, float]:
    """Normalised score, for every profile, of a detector's own binary alerts (no sweep).

    Parameters
    ----------
    corpus_detections : mapping of str to array_like of bool
        Per relative path, one boolean per row of the data file.
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.

    Returns
    -------
    dict of str to float
        Normalised score per profile name.
    """
    bench = as_benchmark(nab_dir)
    return {
        name: score_detections(corpus_detections, bench, name).normalised_score
        for name in bench.profiles
    }


def load_detector_scores(
    results_dir: PathLike, detector_name: str, nab_dir: BenchmarkLike
) -> dict[str, FloatArray]:
    """Read the ``anomaly_score`` column of a detector's NAB-format result files.

    Parameters
    ----------
    results_dir : str or path-like
        Directory holding ``<detector>/<category>/<detector>_<file>.csv``.
    detector_name : str
        Detector name, e.g. ``windowedGaussian``.
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout (to know which files to expect).

    Returns
    -------
    dict of str to numpy.ndarray
        Anomaly scores per relative data path.

    Raises
    ------
    FileNotFoundError
        If a corpus file has no result file.
    ValueError
        If a result file does not have one row per data row.
    """
    bench = as_benchmark(nab_dir)
    root = Path(results_dir) / detector_name
    out: dict[str, FloatArray] = {}
    for path in bench.files:
        category, name = path.split("/")
        result_file = root / category / f"{detector_name}_{name}"
        frame = pd.read_csv(result_file, usecols=["anomaly_score"])
        out[path] = _as_floats(bench, path, frame["anomaly_score"].to_numpy(np.float64))
    return out


def score_results_dir(
    results_dir: PathLike, nab_dir: BenchmarkLike, detector_name: str
) -> dict[str, dict[str, float]]:
    """Optimise the threshold and score a detector's result files, for every profile.

    Parameters
    ----------
    results_dir : str or path-like
        Directory holding ``<detector>/<category>/<detector>_<file>.csv`` with columns
        ``timestamp,value,anomaly_score,label`` (NAB's ``results/``).
    nab_dir : NabBenchmark or str or path-like
        The benchmark, or the root of a NAB checkout.
    detector_name : str
        Detector name.

    Returns
    -------
    dict of str to dict
        Per profile, ``{"threshold": best threshold, "score": normalised score,
        "raw_score": raw score}``; ``score`` is comparable to ``results/final_results.json``
        and ``raw_score`` to ``config/thresholds.json``.
    """
    bench = as_benchmark(nab_dir)
    scores = load_detector_scores(results_dir, detector_name, bench)
    out: dict[str, dict[str, float]] = {}
    for name in bench.profiles:
        best = sweep(scores, bench, name)
        out[name] = {
            "threshold": best.threshold,
            "score": best.normalised_score,
            "raw_score": best.raw_score,
        }
    return out
