"""Offline-trained models as data: the artifact ``python -m job train-model`` writes, read
and scored in plain Python (no numpy, no scikit-learn on the workers).

An artifact is one JSON object::

    {"format": "flink-anomaly-model", "format_version": 1,
     "kind": "isolation_forest" | "one_class_svm",
     "features": ["cpu", "latency_ms"],           # the event's metrics, in vector order
     "trained": {"input": "...", "from_ts": ..., "to_ts": ..., "events": ..., "sklearn": "1.9.1"},
     "models": [{"entities": "srv-*", "events": 4032, ...}, ...]}

``models`` holds one fitted model per entity or per group of entities: ``entities`` is a
shell pattern (an entity's own name for one model per entity); an entity takes the first
model whose pattern matches it. An isolation forest is ``max_samples`` and its ``trees``
(``left``, ``right``, ``feature``, ``threshold``, ``samples`` per node, as scikit-learn's
``tree_`` arrays, and the columns the tree was fitted on); a one-class SVM is an RBF
``gamma``, the ``support`` vectors and their ``dual`` coefficients, after scaling by
``scale_mean``/``scale_std``. :func:`load_artifact` refuses anything else with one line.

The scores equal scikit-learn's ``score_samples`` (to 1e-9, ``tests/core/test_custom_models.py``):
for a forest ``-2 ** (-E(h) / c(max_samples))`` where ``h`` is a sample's path length
through a tree plus ``c(n)`` of the ``n`` training samples left in its leaf (values compared
as float32, as the trees were fitted); for the SVM ``sum(dual * exp(-gamma * |x - sv|^2))``.
The job's raw anomaly score is in [0, 1], higher more unusual: ``-score_samples`` for the
forest, ``1 - score_samples / sum(dual)`` for the SVM.

The artifact's ``version`` is the first 12 hex digits of the SHA-256 of its bytes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import struct
from typing import Any

__all__ = [
    "FORMAT",
    "KINDS",
    "Artifact",
    "ForestScorer",
    "SvmScorer",
    "load_artifact",
    "parse_artifact",
]

FORMAT = "flink-anomaly-model"
FORMAT_VERSION = 1
KINDS = ("isolation_forest", "one_class_svm")
_EULER_GAMMA = 0.5772156649015329
_F32 = struct.Struct("<f")


def average_path_length(n: float) -> float:
    """``c(n)``: the mean path length of an unsuccessful search in a binary tree of ``n``
    samples (scikit-learn's ``_average_path_length``)."""
    if n <= 1.0:
        return 0.0
    if n <= 2.0:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + _EULER_GAMMA) - 2.0 * (n - 1.0) / n


class ForestScorer:
    """One isolation forest (see the module docstring)."""

    __slots__ = ("trees", "denominator")

    def __init__(self, max_samples: int, trees: list[dict[str, Any]]) -> None:
        self.trees = [
            (
                [int(v) for v in t["left"]],
                [int(v) for v in t["right"]],
                [int(t["columns"][f]) if f >= 0 else -1 for f in (int(v) for v in t["feature"])],
                [float(v) for v in t["threshold"]],
                # depth + c(samples) at each leaf: only leaves are read
                _leaf_lengths(t),
            )
            for t in trees
        ]
        self.denominator = len(trees) * average_path_length(float(max_samples))

    def score_samples(self, x: list[float]) -> float:
        """scikit-learn's ``IsolationForest.score_samples`` of one vector."""
        x32 = [_F32.unpack(_F32.pack(v))[0] for v in x]
        total = 0.0
        for left, right, feature, threshold, lengths in self.trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x32[feature[node]] <= threshold[node] else right[node]
            total += lengths[node]
        return -float(2.0 ** (-(total / self.denominator)))

    def raw(self, x: list[float]) -> float:
        """The anomaly score in [0, 1] (``-score_samples``)."""
        return -self.score_samples(x)


def _leaf_lengths(tree: dict[str, Any]) -> list[float]:
    left = [int(v) for v in tree["left"]]
    right = [int(v) for v in tree["right"]]
    samples = [float(v) for v in tree["samples"]]
    depth = [0] * len(left)
    out = [0.0] * len(left)
    for node in range(len(left)):  # parents come before their children (scikit-learn order)
        if left[node] == -1:
            out[node] = (depth[node] + 1.0) + average_path_length(samples[node]) - 1.0
        else:
            depth[left[node]] = depth[node] + 1
            depth[right[node]] = depth[node] + 1
    return out


class SvmScorer:
    """One RBF one-class SVM over scaled inputs (see the module docstring)."""

    __slots__ = ("gamma", "support", "dual", "mean", "std", "total")

    def __init__(self, model: dict[str, Any]) -> None:
        self.gamma = float(model["gamma"])
        self.support = [[float(v) for v in sv] for sv in model["support"]]
        self.dual = [float(v) for v in model["dual"]]
        self.mean = [float(v) for v in model["scale_mean"]]
        self.std = [float(v) for v in model["scale_std"]]
        self.total = sum(self.dual)

    def score_samples(self, x: list[float]) -> float:
        """scikit-learn's ``OneClassSVM.score_samples`` of one (unscaled) vector."""
        z = [(v - m) / s for v, m, s in zip(x, self.mean, self.std, strict=True)]
        out = 0.0
        for sv, a in zip(self.support, self.dual, strict=True):
            d = 0.0
            for zi, si in zip(z, sv, strict=True):
                d += (zi - si) * (zi - si)
            out += a * math.exp(-self.gamma * d)
        return out

    def raw(self, x: list[float]) -> float:
        """The anomaly score in [0, 1]: ``1 - score_samples / sum(dual)``."""
        return 1.0 - self.score_samples(x) / self.total if self.total > 0 else 0.0


class Artifact:
    """A loaded artifact: its kind, feature names, version and one scorer per pattern."""

    __slots__ = ("kind", "features", "version", "trained", "patterns", "scorers")

    def __init__(self, data: dict[str, Any], version: str) -> None:
        self.kind = str(data["kind"])
        self.features = tuple(str(f) for f in data["features"])
        self.version = version
        self.trained = dict(data.get("trained", {}))
        self.patterns = [str(m["entities"]) for m in data["models"]]
        self.scorers: list[ForestScorer | SvmScorer] = [
            ForestScorer(int(m["max_samples"]), m["trees"]) if self.kind == "isolation_forest" else SvmScorer(m)
            for m in data["models"]
        ]

    def scorer_for(self, entity: str) -> ForestScorer | SvmScorer | None:
        """The model of the first pattern ``entity`` matches, or None."""
        for pattern, scorer in zip(self.patterns, self.scorers, strict=True):
            if fnmatch.fnmatchcase(entity, pattern):
                return scorer
        return None


def parse_artifact(raw: bytes) -> Artifact:
    """An :class:`Artifact` from the bytes of an artifact file; ``ValueError`` with one line
    saying what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not an artifact of python -m job train-model (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not an artifact of python -m job train-model (no \"format\": \"{FORMAT}\")")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"artifact format_version {data.get('format_version')!r}; this job reads {FORMAT_VERSION}")
    if data.get("kind") not in KINDS:
        raise ValueError(f"artifact kind {data.get('kind')!r} is not one of {', '.join(KINDS)}")
    features = data.get("features")
    models = data.get("models")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise ValueError("artifact features must be a non-empty list of metric names")
    if not isinstance(models, list) or not models:
        raise ValueError("artifact models must be a non-empty list")
    try:
        artifact = Artifact(data, hashlib.sha256(raw).hexdigest()[:12])
        for scorer in artifact.scorers:  # the shapes agree with the features
            scorer.raw([0.0] * len(features))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"artifact models are malformed ({type(exc).__name__}: {exc})") from None
    return artifact


_LOADED: dict[str, Artifact] = {}


def load_artifact(path: str, content: bytes | None = None) -> Artifact:
    """The artifact at ``path`` (read once per process), or from ``content`` when the
    operator shipped its bytes to the workers."""
    found = _LOADED.get(path)
    if found is not None and content is None:
        return found
    if content is None:
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read the artifact: {exc.strerror or exc}") from None
    artifact = parse_artifact(content)
    _LOADED[path] = artifact
    return artifact
