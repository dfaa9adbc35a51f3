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

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

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

PROBATION_PERCENT = 0.15
"""Fraction of every data file (capped at ``PROBATION_PERCENT * 5000`` rows) left unscored."""

NO_DETECTION_THRESHOLD = 1.1
"""Threshold NAB reports for "no detection at all" (anomaly scores live in ``[0, 1]``)."""

PathLike: TypeAlias = str | os.PathLike[str]
FloatArray: TypeAlias = npt.NDArray[np.float64]
Window: TypeAlias = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class CostMatrix:
    """Weights of one NAB scoring profile.

    Attributes
    ----------
    tp_weight : float
        Reward for detecting a window on its first row.
    fp_weight : float
        Cost of a false positive far from any preceding window.
    fn_weight : float
        Cost of a missed window.
    """

    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class FileScore:
    """Raw NAB score of one data file and its row counts (scored rows only).

    Attributes
    ----------
    score : float
        Raw score: sum of the window scores and of the false-positive costs.
    tp, tn, fp, fn : int
        Detected rows inside windows, undetected rows outside, detected rows outside,
        undetected rows inside (rows in the probation period are not counted).
    total : int
        Number of scored rows (``tp + tn + fp + fn``), as NAB v1.1 reports it. (The
        published ``*_scores.csv`` files, written by NAB's pre-2019 scorer, put the file's
        full row count, probation included, in ``Total_Count``.)
    """

    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int


@dataclass(frozen=True)
class CorpusScore:
    """Score of a whole corpus under one profile.

    Attributes
    ----------
    profile : str
        Profile name (or ``"custom"`` for a bare :class:`CostMatrix`).
    raw_score : float
        Sum of the per-file raw scores.
    normalised_score : float
        ``100 * (raw - null) / (perfect - null)``.
    per_file : dict of str to FileScore
        Per-file scores keyed by relative path (``category/file.csv``).
    """

    profile: str
    raw_score: float
    normalised_score: float
    per_file: dict[str, FileScore]


class SweepResult(NamedTuple):
    """Best corpus-wide threshold found by :func:`sweep`."""

    threshold: float
    raw_score: float
    normalised_score: float


def scaled_sigmoid(x: npt.ArrayLike) -> FloatArray:
    """NAB's scaled sigmoid ``2 * sigmoid(-5 x) - 1``, with ``-1`` for ``x > 3``.

    Parameters
    ----------
    x : array_like
        Relative position: ``-1`` is the left edge of a window, ``0`` just past its right
        edge, positive values lie after the window (in window widths).

    Returns
    -------
    numpy.ndarray
        Values in ``[-1, 1)``: ``0.98661`` at ``-1``, ``0`` at ``0``, ``-0.98661`` at ``1``.
    """
    pos = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 * (1.0 / (1.0 + np.exp(5.0 * pos))) - 1.0
    return np.where(pos > 3.0, -1.0, val)


_MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows of a file that NAB does not score.

    NAB's ``getProbationPeriod`` is ``min(floor(p * n), p * 5000)`` and a row ``i`` is
    scored when ``i >= `` that value, i.e. 15 % of the file but at most 750 rows.

    Parameters
    ----------
    n_rows : int
        Number of rows of the data file.
    probation_percent : float, optional
        Probationary fraction, 0.15 in NAB.

    Returns
    -------
    int
        Index of the first scored row.
    """
    return math.ceil(min(math.floor(probation_percent * n_rows), probation_percent * 5000))


@dataclass(frozen=True)
class FileLayout:
    """Profile-independent scoring geometry of one data file.

    Attributes
    ----------
    n_rows : int
        Rows in the file.
    probation : int
        Index of the first scored row.
    window_index : numpy.ndarray of int
        Per row, the index of the window holding it, ``-1`` outside windows.
    unweighted : numpy.ndarray of float
        Per row, the scaled sigmoid of its position: inside a window ``S(-(r - i + 1) / w)``
        (the TP reward is this times ``tpWeight / S(-1)``), outside ``S((i - r) / (w - 1))``
        after a window and ``-1`` before the first one (the FP reward is this times
        ``fpWeight``).
    n_windows : int
        Labelled windows in the file.
    scored_windows : numpy.ndarray of bool
        Per window, whether it has at least one row after the probation period (only those
        can be a TP or a FN).
    """

    n_rows: int
    probation: int
    window_index: npt.NDArray[np.int64]
    unweighted: FloatArray
    n_windows: int
    scored_windows: npt.NDArray[np.bool_]

    @property
    def scorable(self) -> npt.NDArray[np.bool_]:
        """Mask of the rows after the probation period."""
        return np.arange(self.n_rows) >= self.probation

    def row_scores(self, cost: CostMatrix) -> FloatArray:
        """Weighted score each row would earn if it were a detection.

        This is NAB's per-row ``sweepScore`` (``calcSweepScore``), which NAB v1.1 writes to
        the ``S(t)_<profile>`` column of result files.

        Parameters
        ----------
        cost : CostMatrix
            Profile weights.

        Returns
        -------
        numpy.ndarray
            Per-row weighted score, probation rows included.
        """
        in_window = self.window_index >= 0
        tp = self.unweighted * cost.tp_weight / _MAX_TP
        return np.where(in_window, tp, self.unweighted * cost.fp_weight)


def _window_rows(ts: npt.NDArray[np.datetime64], when: pd.Timestamp, name: str) -> int:
    hits = np.flatnonzero(ts == np.datetime64(when.to_datetime64(), "ns"))
    if hits.size == 0:
        raise ValueError(f"{name}: window limit {when} is not a timestamp of the data file")
    return int(hits[0])


def file_layout(
    timestamps: npt.ArrayLike | pd.Series | pd.DatetimeIndex,
    windows: Sequence[tuple[object, object]],
    probation_percent: float = PROBATION_PERCENT,
    name: str = "<file>",
) -> FileLayout:
    """Compute the scoring geometry of one data file.

    Parameters
    ----------
    timestamps : array_like of datetime
        The file's timestamps, in row order.
    windows : sequence of (start, end)
        Anomaly windows; both limits must be timestamps of the file (NAB requires exact
        matches). Windows must not overlap.
    probation_percent : float, optional
        Probationary fraction, 0.15 in NAB.
    name : str, optional
        File name used in error messages.

    Returns
    -------
    FileLayout
        Window membership and unweighted per-row scores.

    Raises
    ------
    ValueError
        If a window limit is not a timestamp of the file, or windows overlap or are reversed.
    """
    ts = pd.DatetimeIndex(pd.to_datetime(np.asarray(timestamps))).as_unit("ns").to_numpy()
    n = len(ts)
    limits = sorted(
        (_window_rows(ts, pd.Timestamp(a), name), _window_rows(ts, pd.Timestamp(b), name))
        for a, b in windows
    )
    window_index = np.full(n, -1, dtype=np.int64)
    unweighted = np.full(n, -1.0)  # before any window: "far away" false positive
    rows = np.arange(n)
    prev_right = -1
    for k, (left, right) in enumerate(limits):
        if right < left or left <= prev_right:
            raise ValueError(f"{name}: windows overlap or are reversed: {limits}")
        width = right - left + 1
        inside = rows[left : right + 1]
        window_index[left : right + 1] = k
        unweighted[left : right + 1] = scaled_sigmoid(-(right - inside + 1) / width)
        stop = limits[k + 1][0] if k + 1 < len(limits) else n
        after = rows[right + 1 : stop]
        if width > 1:
            unweighted[right + 1 : stop] = scaled_sigmoid((after - right) / (width - 1))
        # A one-row window makes NAB divide by zero; treat what follows as far away.
        prev_right = right
    probation = probation_length(n, probation_percent)
    scored = np.array([right >= probation for _, right in limits], dtype=bool)
    return FileLayout(n, probation, window_index, unweighted, len(limits), scored)


class NabBenchmark:
    """Timestamps, windows and profiles of a NAB corpus, with per-file layouts precomputed.

    Parameters
    ----------
    timestamps : mapping of str to array_like of datetime
        Per relative path (``category/file.csv``), the file's timestamps.
    windows : mapping of str to sequence of (start, end)
        Per relative path, its anomaly windows. Every file of ``timestamps`` must have an
        entry (possibly empty).
    profiles : mapping of str to CostMatrix
        Scoring profiles by name.
    probation_percent : float, optional
        Probationary fraction, 0.15 in NAB.
    """

    def __init__(
        self,
        timestamps: Mapping[str, npt.ArrayLike | pd.Series | pd.DatetimeIndex],
        windows: Mapping[str, Sequence[tuple[object, object]]],
        profiles: Mapping[str, CostMatrix],
        probation_percent: float = PROBATION_PERCENT,
    ) -> None:
        missing = sorted(set(timestamps) - set(windows))
        if missing:
            raise ValueError(f"no windows entry for {missing}")
        self.profiles: dict[str, CostMatrix] = dict(profiles)
        self.probation_percent = probation_percent
        self.layouts: dict[str, FileLayout] = {
            path: file_layout(ts, windows[path], probation_percent, path)
            for path, ts in sorted(timestamps.items())
        }
        # NAB's "tpCount": every window of the label file, whether scorable or not.
        self.n_windows = sum(len(windows[path]) for path in self.layouts)
        self.n_scored_windows = sum(int(lay.scored_windows.sum()) for lay in self.layouts.values())

    @classmethod
    def from_dir(
        cls, nab_dir: PathLike, probation_percent: float = PROBATION_PERCENT
    ) -> NabBenchmark:
        """Load a NAB checkout (``data/``, ``labels/combined_windows.json``, ``config/``)."""
        corpus = load_corpus(nab_dir)
        return cls(
            {path: df["timestamp"] for path, df in corpus.items()},
            load_windows(nab_dir),
            load_profiles(nab_dir),
            probation_percent,
        )

    @property
    def files(self) -> list[str]:
        """Relative paths of the corpus files, sorted."""
        return list(self.layouts)

    def cost(self, profile: str | CostMatrix) -> CostMatrix:
        """Resolve a profile name (or pass a :class:`CostMatrix` through)."""
        if isinstance(profile, CostMatrix):
            return profile
        try:
            return self.profiles[profile]
        except KeyError:
            raise KeyError(f"unknown profile {profile!r}; have {sorted(self.profiles)}") from None

    def null_score(self, profile: str | CostMatrix) -> float:
        """Raw score of the detector that never detects: ``-fnWeight`` per scored window."""
        return -self.cost(profile).fn_weight * self.n_scored_windows

    def perfect_score(self, profile: str | CostMatrix) -> float:
        """Raw score of a detection on the first row of every window (NAB's ``perfect``)."""
        return self.cost(profile).tp_weight * self.n_windows

    def normalise(self, raw_score: float, profile: str | CostMatrix) -> float:
        """Normalise a raw corpus score: 100 for the perfect detector, 0 for the null one."""
        null = self.null_score(profile)
        return 100.0 * (raw_score - null) / (self.perfect_score(profile) - null)


BenchmarkLike: TypeAlias = NabBenchmark | str | os.PathLike[str]


@functools.lru_cache(maxsize=4)
def _cached_benchmark(nab_dir: str, probation_percent: float) -> NabBenchmark:
    return NabBenchmark.from_dir(nab_dir, probation_percent)


def load_benchmark(nab_dir: PathLike, probation_percent: float = PROBATION_PERCENT) -> NabBenchmark:
    """Load (and cache, per resolved directory) the :class:`NabBenchmark` of a NAB checkout.

    Parameters
    ----------
    nab_dir : str or path-like
        Root of the NAB checkout.
    probation_percent : float, optional
        Probationary fraction, 0.15 in NAB.

    Returns
    -------
    NabBenchmark
        Shared, read-only benchmark description.
    """
    return _cached_benchmark(str(Path(nab_dir).resolve()), probation_percent)


def _as_benchmark(nab_dir: BenchmarkLike) -> NabBenchmark:
    return nab_dir if isinstance(nab_dir, NabBenchmark) else load_benchmark(nab_dir)


def load_corpus(nab_dir: PathLike) -> dict[str, pd.DataFrame]:
    """Read every data file of a NAB checkout.

    Parameters
    ----------
    nab_dir : str or path-like
        Root of the NAB checkout (holding ``data/<category>/<file>.csv``).

    Returns
    -------
    dict of str to pandas.DataFrame
        Frames with columns ``timestamp`` (parsed) and ``value``, keyed by relative path
        such as ``realKnownCause/nyc_taxi.csv``, sorted by key.
    """
    data_dir = Path(nab_dir) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no NAB data directory at {data_dir}")
    return {
        path.relative_to(data_dir).as_posix(): pd.read_csv(path, parse_dates=["timestamp"])
        for path in sorted(data_dir.glob("*/*.csv"))
    }


def load_windows(nab_dir: PathLike) -> dict[str, list[Window]]:
    """Read ``labels/combined_windows.json``.

    Parameters
    ----------
    nab_dir : str or path-like
        Root of the NAB checkout.

    Returns
    -------
    dict of str to list of (pandas.Timestamp, pandas.Timestamp)
        Anomaly windows per relative path, in file order.
    """
    with open(Path(nab_dir) / "labels" / "combined_windows.json") as f:
        raw: dict[str, list[list[str]]] = json.load(f)
    return {
        path: [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in wins]
        for path, wins in raw.items()
    }


def load_profiles(nab_dir: PathLike) -> dict[str, CostMatrix]:
    """Read ``config/profiles.json``.

    Parameters
    ----------
    nab_dir : str or path-like
        Root of the NAB checkout.

    Returns
    -------
    dict of str to CostMatrix
        ``standard``, ``reward_low_FP_rate`` and ``reward_low_FN_rate`` in NAB v1.1.
    """
    with open(Path(nab_dir) / "config" / "profiles.json") as f:
        raw = json.load(f)
    return {
        name: CostMatrix(
            tp_weight=float(p["CostMatrix"]["tpWeight"]),
            fp_weight=float(p["CostMatrix"]["fpWeight"]),
            fn_weight=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


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
    bench = _as_benchmark(nab_dir)
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
    bench = _as_benchmark(nab_dir)
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
    bench = _as_benchmark(nab_dir)
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
    bench = _as_benchmark(nab_dir)
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
    bench = _as_benchmark(nab_dir)
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
    bench = _as_benchmark(nab_dir)
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
