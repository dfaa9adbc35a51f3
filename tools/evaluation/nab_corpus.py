"""The Numenta Anomaly Benchmark corpus as the scorer reads it: the data files, their
labelled windows, the cost profiles, and each file's layout (probation, windows in rows);
NAB's rules are described in :mod:`tools.evaluation.nab_scoring`."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "NO_DETECTION_THRESHOLD",
    "PROBATION_PERCENT",
    "BenchmarkLike",
    "CorpusScore",
    "CostMatrix",
    "FileLayout",
    "FileScore",
    "FloatArray",
    "NabBenchmark",
    "PathLike",
    "SweepResult",
    "as_benchmark",
    "file_layout",
    "load_benchmark",
    "load_corpus",
    "load_profiles",
    "load_windows",
    "probation_length",
    "scaled_sigmoid",
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


def as_benchmark(nab_dir: BenchmarkLike) -> NabBenchmark:
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
