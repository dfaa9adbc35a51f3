"""The alert filter's pure half: the feature vector of an alert and the linear model the job
runs on it (no numpy, no scikit-learn: the workers import only pure Python).

``python -m job train-filter`` (``tools/train_filter.py``) trains a scikit-learn model on
labelled alerts; a logistic-regression artifact becomes a :class:`FilterConfig` of plain
numbers in the client (``detector.filter.artifact``), and every detector then computes
``p = sigmoid(intercept + sum(coef_i * (x_i - mean_i) / scale_i))`` over
:func:`alert_features` of each ``open`` record. With ``p >= threshold`` the episode is held
back whole (its escalations and its resolution too) and counted: the next alert of the
entity that gets out carries ``filtered_before``.

Examples
--------
>>> cfg = FilterConfig(enabled=True, mean=(0.0,) * len(FEATURES), scale=(1.0,) * len(FEATURES),
...                    coef=(0.0,) * len(FEATURES), intercept=2.0, threshold=0.8)
>>> alert = {"score": 0.999, "threshold": 0.99, "ts_ms": 0, "features": []}
>>> round(false_positive_probability(cfg, alert), 4), drops(cfg, alert)
(0.8808, True)
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

from udfs.core.alerts import SEVERITIES

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "FEATURES",
    "FilterConfig",
    "alert_features",
    "drops",
    "false_positive_probability",
    "filter_from_artifact",
    "metric_of",
]

METRIC_BUCKETS = 8
FEATURES = (
    "score",
    "threshold",
    "margin_decades",
    "severity",
    "direction",
    "log_abs_z",
    "log_rel_deviation",
    "hour_sin",
    "hour_cos",
    *(f"metric_{i}" for i in range(METRIC_BUCKETS)),
)
_TAIL_FLOOR = 5e-7
_DAY_MS = 86_400_000


def _decades(score: float) -> float:
    return -math.log10(max(1.0 - score, _TAIL_FLOOR))


_SUFFIXES = (".seasonal", ".baseline", ".range")


def metric_of(feature: str) -> str:
    """The metric of an explained feature (metric names may contain dots; window names may
    not).

    >>> metric_of("cpu.1m.zscore"), metric_of("disk.io.seasonal"), metric_of("cpu.range")
    ('cpu', 'disk.io', 'cpu')
    """
    for suffix in _SUFFIXES:
        if feature.endswith(suffix):
            return feature[: -len(suffix)]
    parts = feature.rsplit(".", 2)
    return parts[0] if len(parts) == 3 and parts[2] == "zscore" else feature


def alert_features(alert: dict[str, Any]) -> list[float]:
    """The feature vector of one alert record, in :data:`FEATURES` order."""
    score = float(alert["score"])
    threshold = float(alert["threshold"])
    feats = alert.get("features") or []
    top = feats[0] if feats else {}
    z = float(top.get("z", 0.0))
    actual = float(top.get("actual", 0.0))
    expected = float(top.get("expected", 0.0))
    rel = min(abs(actual - expected) / max(abs(expected), 1e-9), 1e6)
    hour = (int(alert["ts_ms"]) % _DAY_MS) / 3_600_000.0
    angle = 2.0 * math.pi * hour / 24.0
    bucket = [0.0] * METRIC_BUCKETS
    if top:
        bucket[zlib.crc32(metric_of(str(top["feature"])).encode()) % METRIC_BUCKETS] = 1.0
    severity = alert.get("severity", "info")
    if "rarity" in alert and "threshold_rarity" in alert:
        margin = float(alert["rarity"]) - float(alert["threshold_rarity"])
    else:
        margin = _decades(score) - _decades(threshold)
    return [
        score,
        threshold,
        margin,
        float(SEVERITIES.index(severity) if severity in SEVERITIES else 0),
        -1.0 if alert.get("direction") == "dip" else 1.0,
        math.log1p(abs(z)),
        math.log1p(rel),
        math.sin(angle),
        math.cos(angle),
        *bucket,
    ]


@dataclass(frozen=True)
class FilterConfig:
    """The trained false-positive filter, as numbers (off by default).

    Parameters
    ----------
    enabled
        Drop alerts the model calls false positives. Set by ``artifact`` (to turn the filter
        off, leave ``artifact`` empty).
    artifact
        Path of a ``train-filter`` artifact (logistic model); setting it turns the filter on.
        The client that builds the job reads it and fills in the numbers below; workers never
        read files.
    mean, scale, coef, intercept
        The standardisation and the logistic regression over :data:`FEATURES`.
    threshold
        Drop an alert when its false-positive probability is at least this; ``0`` (the
        default) takes the artifact's own threshold (chosen by ``train-filter`` to keep
        95 % of the true positives).
    model_id
        Identifies the artifact (its file name and training size) in the configuration the
        job runs with (``python -m job config``).
    """

    enabled: bool = False
    artifact: str = ""
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    threshold: float = 0.0
    model_id: str = ""

    def __post_init__(self) -> None:
        n = len(FEATURES)
        if self.enabled and not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError(
                f"an enabled filter needs mean, scale and coef of {n} numbers each "
                "(set detector.filter.artifact to a train-filter artifact)"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


#: What ``train-filter`` writes (``tools/train_filter.py``): the format and layout version.
ARTIFACT_FORMAT = "alert-filter"
ARTIFACT_VERSION = 2


def filter_from_artifact(artifact: Any, source: str = "artifact") -> FilterConfig:
    """The filter an artifact of ``train-filter`` describes (its JSON, decoded): the format,
    version, feature list and numbers are checked here, so a worker never runs numbers it
    cannot trust. Raises ``ValueError`` naming ``source`` and what is wrong."""
    if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
        got = artifact.get("format") if isinstance(artifact, dict) else type(artifact).__name__
        raise ValueError(f"{source}: not an alert-filter artifact (format {got!r})")
    if artifact.get("version") != ARTIFACT_VERSION:
        raise ValueError(
            f"{source}: alert-filter version {artifact.get('version')!r} is not "
            f"{ARTIFACT_VERSION}: retrain it with this release"
        )
    if list(artifact.get("features", ())) != list(FEATURES):
        raise ValueError(
            f"{source}: its features {artifact.get('features')!r} are not {list(FEATURES)}"
        )
    n = len(FEATURES)
    try:
        vectors = [[float(v) for v in artifact[k]] for k in ("mean", "scale", "coef")]
        intercept, threshold = float(artifact["intercept"]), float(artifact["threshold"])
        trained_on = int(artifact.get("trained_on", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: malformed alert-filter numbers ({exc})") from None
    numbers = [*(v for vec in vectors for v in vec), intercept, threshold]
    if any(len(vec) != n for vec in vectors) or not all(math.isfinite(v) for v in numbers):
        raise ValueError(
            f"{source}: mean, scale and coef must be {n} finite numbers each, and the "
            "intercept and threshold finite"
        )
    name = source.replace("\\", "/").rsplit("/", 1)[-1] or "artifact"
    return FilterConfig(
        enabled=True,
        artifact=source,
        mean=tuple(vectors[0]),
        scale=tuple(vectors[1]),
        coef=tuple(vectors[2]),
        intercept=intercept,
        threshold=threshold,
        model_id=f"{name}:{trained_on}",
    )


def false_positive_probability(cfg: FilterConfig, alert: dict[str, Any]) -> float:
    """The model's probability that operators would call ``alert`` a false positive."""
    x = alert_features(alert)
    t = cfg.intercept
    for xi, m, s, c in zip(x, cfg.mean, cfg.scale, cfg.coef, strict=True):
        t += c * (xi - m) / s
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def drops(cfg: FilterConfig, alert: dict[str, Any]) -> bool:
    """Whether the filter holds ``alert`` back."""
    return cfg.enabled and false_positive_probability(cfg, alert) >= cfg.threshold
