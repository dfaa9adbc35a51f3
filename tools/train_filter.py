"""``python -m job train-filter``: learn which alerts operators call false positives.

Input: the job's ``alerts.jsonl`` (only ``kind == "open"`` records are used: one per episode)
and a JSON-lines file of operator verdicts (see :mod:`udfs.core.feedback`), joined on
``alert_id``. When an alert has several verdicts the **last** one in the file is its label (a
correction in the verdict log is honoured; the online :class:`~udfs.core.feedback.ThresholdFeedback`
can only count the first, it cannot undo a step).

Each alert becomes the feature vector :data:`FEATURES`:

=====================  ================================================================
``score``              the alert's score ``1 - 10**-rarity``
``threshold``          the entity's threshold on the same scale
``margin_decades``     ``-log10(1 - score) + log10(1 - threshold)``: how many decades of
                       rarity the event cleared its threshold by (``1 - x`` is floored at
                       ``5e-7``: scores are rounded to 6 decimals, so 1.0 means "at least
                       about 6.3 decades"); ``rarity - threshold_rarity`` instead when the
                       record carries those optional fields
``severity``           0 info, 1 warning, 2 critical
``direction``          +1 spike, -1 dip
``log_abs_z``          ``log1p(|z|)`` of the leading feature (z is capped at 1000)
``log_rel_deviation``  ``log1p(|actual - expected| / |expected|)`` of the leading feature
                       (``|expected|`` floored at 1e-9, the ratio capped at 1e6)
``hour_sin/hour_cos``  hour of day (UTC, fractional) of ``ts_ms`` on the unit circle, so
                       23:30 is next to 00:30
``metric_0..7``        one-hot of ``crc32(metric name) % 8`` of the leading feature
                       (``<metric>.<window>.zscore`` -> ``<metric>``): a stable hash (not
                       Python's salted ``hash``), so the same metric lands in the same bucket
                       in every process; distinct metrics may share a bucket
=====================  ================================================================

The model is ``StandardScaler`` + ``LogisticRegression(class_weight="balanced")``. It was
picked by 5-fold cross-validated average precision on the synthetic labelled alerts of
``tests/offline/test_train_filter.py`` (15 % of the false positives indistinguishable from true ones;
3 seeds at 300, 600 and 2,000 alerts): 0.927-0.936 for it against 0.931-0.934 for
``HistGradientBoostingClassifier(class_weight="balanced")``, a tie within seed noise, while the
linear model trains 10 to 100 times faster, its coefficients can be read, and the job's
workers run it as a few numbers in pure Python (they cannot import scikit-learn).

The drop threshold ``p`` is chosen on out-of-fold probabilities: the smallest ``p >= 0.5``
such that at most ``--max-tp-drop`` (default 5 %) of the true positives score ``>= p``.
Dropping a real incident costs more than letting a false alarm through.

The artifact is data, not code: a JSON object ``{"format": "alert-filter", "version": 2,
"sklearn": <version it was trained with>, "features": [...], "mean": [...], "scale": [...],
"coef": [...], "intercept": x, "threshold": p, "trained_on": n, "metrics": {...}}``, the
scaler's and the logistic regression's numbers in :data:`FEATURES` order. Loading it runs no
code (unlike a pickle); :meth:`AlertFilter.load` refuses another format, version or feature
list, and numbers that are not finite.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from udfs.core.alert_filter import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    FEATURES,
    FilterConfig,
    alert_features,
    false_positive_probability,
    filter_from_artifact,
)
from udfs.core.events import DeadLetter
from udfs.core.feedback import parse_verdict

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "FEATURES",
    "AlertFilter",
    "alert_features",
    "main",
    "train",
]



def _make_model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2_000)
    )


def _drop_threshold(p_tp: np.ndarray[Any, Any], max_tp_drop: float) -> float:
    """Smallest p >= 0.5 with at most ``max_tp_drop`` of ``p_tp`` at or above it."""
    ranked = np.sort(p_tp)[::-1]
    k = int(math.floor(max_tp_drop * len(ranked)))
    if k >= len(ranked):
        return 0.5
    return max(0.5, float(np.nextafter(ranked[k], 1.0)))


def train(
    alerts: Sequence[dict[str, Any]],
    labels: Sequence[int],
    max_tp_drop: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the filter on ``alerts`` (``labels``: 1 false positive, 0 true) -> the artifact.

    Raises ``ValueError`` when there are fewer than 2 labelled alerts of either kind.
    """
    import sklearn
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels, dtype=int)
    n_fp, n_tp = int(y.sum()), int(len(y) - y.sum())
    if min(n_fp, n_tp) < 2:
        raise ValueError(
            f"need at least 2 false positives and 2 true positives to train, got {n_fp} and {n_tp}"
        )
    if not 0.0 <= max_tp_drop < 1.0:
        raise ValueError(f"max_tp_drop must be in [0, 1), got {max_tp_drop}")
    x = np.asarray([alert_features(a) for a in alerts], dtype=float)
    folds = StratifiedKFold(n_splits=min(5, n_fp, n_tp), shuffle=True, random_state=seed)
    oof = cross_val_predict(_make_model(), x, y, cv=folds, method="predict_proba")[:, 1]
    p = _drop_threshold(oof[y == 0], max_tp_drop)
    estimator = _make_model().fit(x, y)
    scaler, logistic = estimator.named_steps["standardscaler"], estimator.named_steps["logisticregression"]
    return {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "sklearn": sklearn.__version__,
        "features": list(FEATURES),
        "mean": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "coef": [float(v) for v in logistic.coef_[0]],
        "intercept": float(logistic.intercept_[0]),
        "trained_on": len(y),
        "threshold": p,
        "metrics": {
            "false_positives": n_fp,
            "true_positives": n_tp,
            "cv_average_precision": round(float(average_precision_score(y, oof)), 4),
            "cv_fp_dropped": round(float(np.mean(oof[y == 1] >= p)), 4),
            "cv_tp_dropped": round(float(np.mean(oof[y == 0] >= p)), 4),
        },
    }


class AlertFilter:
    """A trained alert filter: the probability an alert is a false positive, and a verdict.

    Build it with :meth:`load` (or from an artifact dict); the checks on format, version and
    features happen here, so a worker never runs numbers it cannot trust. The probability is
    the workers' own pure-Python function (:func:`udfs.core.alert_filter.false_positive_probability`).
    """

    __slots__ = ("config", "threshold", "trained_on")

    def __init__(self, artifact: Any, source: str = "artifact") -> None:
        self.config = filter_from_artifact(artifact, source)
        self.threshold = self.config.threshold
        self.trained_on = int(artifact.get("trained_on", 0))

    @classmethod
    def load(cls, path: str | Path) -> AlertFilter:
        """Read and check an artifact written by ``train-filter`` (JSON)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not an alert-filter artifact (not JSON: {exc})") from None
        return cls(data, str(path))

    def false_positive_probability(self, alert: dict[str, Any]) -> float:
        """Probability in [0, 1] that operators would call ``alert`` a false positive."""
        return false_positive_probability(self.config, alert)

    def should_drop(self, alert: dict[str, Any]) -> bool:
        """Whether ``alert`` is likely enough a false positive to be held back."""
        return self.false_positive_probability(alert) >= self.threshold

    def to_config(self, artifact: str = "") -> FilterConfig:
        """The filter as the plain numbers the job's workers run (:mod:`udfs.core.alert_filter`)."""
        return replace(self.config, artifact=artifact or self.config.artifact)


# -- command line ---------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterable[tuple[int, str]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line.rstrip("\n")


def join(
    alerts_path: Path, verdicts_path: Path
) -> tuple[list[dict[str, Any]], list[int], dict[str, int]]:
    """``open`` alerts with a verdict, their labels (1 = false positive), and counts."""
    counts = {"alert_lines_invalid": 0, "verdicts_invalid": 0, "verdicts_unmatched": 0}
    label: dict[str, int] = {}
    for _, raw in _read_jsonl(verdicts_path):
        v = parse_verdict(raw)
        if isinstance(v, DeadLetter):
            counts["verdicts_invalid"] += 1
            continue
        label[v.alert_id] = 1 if v.false_positive else 0  # the last verdict wins
    alerts: list[dict[str, Any]] = []
    labels: list[int] = []
    matched: set[str] = set()
    for _, raw in _read_jsonl(alerts_path):
        try:
            rec = json.loads(raw)
        except ValueError:
            counts["alert_lines_invalid"] += 1
            continue
        if not isinstance(rec, dict) or rec.get("kind") != "open":
            continue
        aid = rec.get("alert_id")
        if aid in label and aid not in matched:
            matched.add(aid)
            alerts.append(rec)
            labels.append(label[aid])
    counts["verdicts_unmatched"] = len(set(label) - matched)
    return alerts, labels, counts




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alerts", required=True, help="alerts.jsonl written by the job")
    p.add_argument(
        "--verdicts", required=True, help="JSON lines {alert_id, entity, verdict, reason}"
    )
    p.add_argument("--out", required=True, help="where to write the filter artifact (JSON)")
    p.add_argument(
        "--max-tp-drop",
        type=float,
        default=0.05,
        help="largest share of true positives the filter may drop (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """``python -m job train-filter`` with parsed ``args`` (a bad input raises: the command
    line turns it into one line and exit status 2)."""
    alerts_path, verdicts_path = Path(args.alerts), Path(args.verdicts)
    for path in (alerts_path, verdicts_path):
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
    alerts, labels, counts = join(alerts_path, verdicts_path)
    artifact = train(alerts, labels, args.max_tp_drop)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(artifact, indent=1) + "\n", encoding="utf-8")
    summary = {
        "out": str(out),
        "trained_on": artifact["trained_on"],
        "threshold": round(artifact["threshold"], 4),
        **artifact["metrics"],
        **counts,
    }
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.train_filter``: the same as ``python -m job train-filter``."""
    from job.cli import main as cli_main

    return cli_main(["train-filter", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
