"""Scores of a detector against labelled anomalies: threshold-free (ROC AUC, PR AUC,
VUS-PR) and at the detector's own alerts (window recall, episode precision, delay).

VUS-PR is the headline metric of the TSB-AD benchmark (Liu and Paparrizos, NeurIPS 2024):
the average precision of a range-aware precision/recall curve, averaged over buffer
lengths ``0 .. window`` around each labelled range. It is written here with numpy (the
maintained implementation, the ``TSB-AD`` package, depends on PyTorch) and agrees with
TSB-AD 1.5's ``get_metrics(...)["VUS-PR"]`` (``version="opt"``, 250 thresholds) on the toy
cases of ``tests/offline/test_eval_metrics.py`` to 1e-12.

>>> import numpy as np
>>> labels = np.array([0, 0, 1, 1, 0, 0, 0, 0])
>>> round(vus_pr(labels, np.array([0, 0, 9, 8, 0, 0, 0, 1.0]), window=2), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "AlertQuality",
    "alert_quality",
    "anomaly_ranges",
    "pr_auc",
    "roc_auc",
    "vus_pr",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=float)))


def pr_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision (scikit-learn's step-wise area under the PR curve)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels, dtype=int)
    if y.max(initial=0) == 0:
        return float("nan")
    return float(average_precision_score(y, np.asarray(scores, dtype=float)))


def anomaly_ranges(labels: npt.ArrayLike) -> list[tuple[int, int]]:
    """``[(first, last), ...]``: the maximal runs of 1 in ``labels`` (inclusive ends)."""
    y = np.asarray(labels, dtype=int)
    d = np.diff(np.concatenate(([0], y, [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _merged(ranges: Sequence[tuple[int, int]], pad: int, n: int) -> list[tuple[int, int]]:
    """The ranges widened by ``pad`` on each side (clipped to ``[0, n)``), overlaps merged."""
    out: list[tuple[int, int]] = []
    start = max(ranges[0][0] - pad, 0)
    for i in range(len(ranges) - 1):
        if ranges[i][1] + pad < ranges[i + 1][0] - pad:
            out.append((start, ranges[i][1] + pad))
            start = ranges[i + 1][0] - pad
    out.append((start, min(ranges[-1][1] + pad, n - 1)))
    return out


def _soft_labels(n: int, ranges: Sequence[tuple[int, int]], window: int) -> FloatArray:
    """1 inside each range, ``sqrt(1 - d / window)`` at distance ``d <= window // 2`` outside."""
    lab = np.zeros(n)
    for s, e in ranges:
        lab[s : e + 1] = 1.0
    if window > 0:
        for s, e in ranges:
            after = np.arange(e + 1, min(e + window // 2 + 1, n))
            lab[after] += np.sqrt(1.0 - (after - e) / window)
            before = np.arange(max(s - window // 2, 0), s)
            lab[before] += np.sqrt(1.0 - (s - before) / window)
    return np.minimum(lab, 1.0)


def vus_pr(
    labels: npt.ArrayLike, scores: npt.ArrayLike, window: int = 100, thresholds: int = 250
) -> float:
    """Volume under the range-aware precision/recall surface (TSB-AD's VUS-PR).

    For each buffer length ``w`` in ``0 .. window``: the labelled ranges get soft edges of
    ``w // 2`` rows; at each of ``thresholds`` score quantiles, recall is the share of the
    (soft) anomalous mass detected, times the share of ranges with at least one detection,
    and precision is the detected mass over all detections; the average precision of that
    curve is averaged over ``w``. NaN without a labelled range.
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    n = len(y)
    seq = anomaly_ranges(y)
    if not seq:
        return float("nan")
    p = float(y.sum())
    outer = _merged(seq, window // 2, n)
    order = -np.sort(-s)
    cut = order[np.linspace(0, n - 1, thresholds).astype(int)]
    preds = s[None, :] >= cut[:, None]  # thresholds x n
    n_pred = preds.sum(axis=1).astype(float)
    inside_outer = np.zeros(n, dtype=bool)
    for a, b in outer:
        inside_outer[a : b + 1] = True
    inside_seq = np.zeros(n, dtype=bool)
    for a, b in seq:
        inside_seq[a : b + 1] = True
    ap = []
    for w in range(window + 1):
        soft = _soft_labels(n, seq, w)
        ranges = _merged(seq, w // 2, n)
        inside = np.zeros(n, dtype=bool)
        for a, b in ranges:
            inside[a : b + 1] = True
        # Per threshold: the labels as TSB-AD rewrites them (soft x detected inside the
        # widened ranges, 1 on the labelled rows), then detected mass and label mass.
        lab = np.where(inside[None, :], soft[None, :] * preds, soft[None, :])
        lab = np.where(inside_seq[None, :], 1.0, lab)
        lab = np.where(inside_outer[None, :], lab, 0.0)
        tp = (lab * preds).sum(axis=1)
        n_labels = lab.sum(axis=1)
        existence = np.array(
            [[preds[k, a : b + 1].any() for a, b in ranges] for k in range(thresholds)]
        ).sum(axis=1)
        p_new = (p + n_labels) / 2.0
        recall = np.minimum(tp / p_new, 1.0)
        tpr = recall * existence / len(ranges)
        precision = tp / n_pred
        width = np.diff(np.concatenate(([0.0], tpr)))
        ap.append(float(np.dot(width, precision)))
    return float(np.mean(ap))


@dataclass(frozen=True)
class AlertQuality:
    """How a detector's own alerts meet the labelled ranges.

    ``windows_caught`` of ``windows`` ranges saw an alert open inside them (recall);
    ``episodes_inside`` of ``episodes`` alert openings fell inside a range (precision);
    ``delays``: for each caught range, rows from its start to the first opening inside it.
    """

    windows: int
    windows_caught: int
    episodes: int
    episodes_inside: int
    delays: tuple[int, ...]

    @property
    def recall(self) -> float:
        return self.windows_caught / self.windows if self.windows else float("nan")

    @property
    def precision(self) -> float:
        return self.episodes_inside / self.episodes if self.episodes else float("nan")


def alert_quality(labels: npt.ArrayLike, opens: npt.ArrayLike) -> AlertQuality:
    """Window recall and episode precision of alert openings (``opens``: 1 on the row where
    an alert episode opens). A window is caught when an alert opens inside it; an opening
    outside every window is a false episode.

    >>> q = alert_quality([0, 1, 1, 0, 0, 1, 1, 0], [1, 0, 1, 0, 0, 0, 0, 0])
    >>> q.windows_caught, q.windows, q.episodes_inside, q.episodes, q.delays
    (1, 2, 1, 2, (1,))
    """
    y = np.asarray(labels, dtype=int)
    o = np.flatnonzero(np.asarray(opens, dtype=int))
    ranges = anomaly_ranges(y)
    caught = 0
    delays = []
    for a, b in ranges:
        inside = o[(o >= a) & (o <= b)]
        if len(inside):
            caught += 1
            delays.append(int(inside[0] - a))
    return AlertQuality(len(ranges), caught, len(o), int(y[o].sum()) if len(o) else 0, tuple(delays))
