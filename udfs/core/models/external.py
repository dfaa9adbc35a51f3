"""Models the user brings: a River estimator by spec (``kind: river``) and an offline-trained
scikit-learn model as an artifact (``kind: artifact``), behind the same interface as the
built-in models (:mod:`udfs.core.models.base`), configured in ``detector.model.custom``.

Both read either the event's raw metric values (``input: metrics``) or its window features
(``input: features``: every finite feature of the event, by name; River models only), score
before they learn, and give a raw score in [0, 1] that the scoring stage calibrates into
rarity against the entity's own past like any other model's (200 bins of 0.005).

- **River** (:class:`RiverModel`): one estimator per entity, built from the spec
  (:mod:`udfs.core.models.river_spec`). Its raw score is squashed into [0, 1] by the
  entity's own running mean and spread of that score (``0.5 + 0.5 tanh(z / 3)``, an
  exponential mean over about 1,000 scores), so any River detector's scale calibrates the
  same way. It learns each event (not the ones judged unusual, unless
  ``model.learn_anomalies``) and is ready after ``model.min_calibration_events`` events.
  Its state is River's own pickle of the estimator, with River's version: a state written
  under another River version is refused at restore (River's pickles do not move between
  versions). A River detector that learns from a target (``anomaly.GaussianScorer``) runs
  once per metric, fed the metric's value, and the model's score is the highest.
- **Artifact** (:class:`ArtifactModel`): the entity's model from an artifact of
  ``python -m job train-model`` (:mod:`udfs.core.models.artifact`), scored in plain Python;
  it learns nothing and keeps no state; an event without every trained metric is not
  scored by it. Its version (the artifact's digest) is in the model's name in score records
  and explanations (``name@version``).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from udfs.core.decision import Contribution
from udfs.core.model_config import CustomModel
from udfs.core.models.artifact import load_artifact
from udfs.core.models.base import Calibration, Context
from udfs.core.models.river_spec import build_spec, river_version

__all__ = ["ArtifactModel", "RiverModel", "build_custom", "calibration_for"]

_SPAN = 1000.0
_SQUASH = 3.0


def calibration_for(half_life: float, min_updates: int) -> Calibration:
    """The calibration of a custom model's score in [0, 1]: 200 bins of 0.005, one more
    decade per 0.1 beyond the highest score seen."""
    return Calibration(200, 0.005, half_life, 1.0, 0.0, False, 10.0, min_updates)


def _inputs(ctx: Context, source: str) -> dict[str, float]:
    if source == "metrics":
        return ctx.metrics
    return {k: v for k, v in ctx.values.items() if v == v and not math.isinf(v)}


class RiverModel:
    """A River estimator of one entity (see the module docstring)."""

    smoothing = 1

    def __init__(self, spec: CustomModel, half_life: float, warmup: int, learn_anomalies: bool) -> None:
        self.name = spec.name
        self.reads_windows = spec.input == "features"
        self.calibration = calibration_for(half_life, warmup)
        self._spec = spec
        self._warmup = warmup
        self._learn_anomalies = learn_anomalies
        model = build_spec(spec.spec)
        self._supervised = _is_supervised(model)
        self._model: Any = None if self._supervised else model
        self._per_metric: dict[str, Any] = {}
        self._n = 0
        self._mean = 0.0
        self._var = 0.0

    def _raw(self, x: dict[str, float]) -> float:
        if not self._supervised:
            return float(self._model.score_one(x))
        best = -math.inf
        for name in sorted(x):
            model = self._per_metric.get(name)
            if model is not None:
                best = max(best, float(model.score_one(None, x[name])))
        return best if best > -math.inf else 0.0

    def score_one(self, ctx: Context) -> float | None:
        x = _inputs(ctx, self._spec.input)
        if not x:
            return None
        raw = self._raw(x)
        if not math.isfinite(raw):
            raw = 0.0
        if self._n == 0:
            return 0.5
        std = math.sqrt(self._var)
        z = (raw - self._mean) / std if std > 0.0 else 0.0
        return 0.5 + 0.5 * math.tanh(z / _SQUASH)

    def applies(self, ctx: Context) -> bool:
        return bool(_inputs(ctx, self._spec.input))

    def ready(self, ctx: Context) -> bool:
        return self._n >= self._warmup

    def learns_calibration(self, ctx: Context) -> bool:
        return self._n >= self._warmup

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        x = _inputs(ctx, self._spec.input)
        if not x:
            return
        raw = self._raw(x)
        if math.isfinite(raw):  # the squash's running mean and spread (exponential)
            if self._n == 0:
                self._mean, self._var = raw, 0.0
            else:
                alpha = 2.0 / (_SPAN + 1.0) if self._n >= _SPAN else 1.0 / (self._n + 1)
                d = raw - self._mean
                self._mean += alpha * d
                self._var = (1.0 - alpha) * (self._var + alpha * d * d)
        self._n += 1
        if unusual and not self._learn_anomalies and self._n > self._warmup:
            return
        if self._supervised:
            for name in sorted(x):
                model = self._per_metric.get(name)
                if model is None:
                    model = self._per_metric[name] = build_spec(self._spec.spec)
                model.learn_one(None, x[name])
        else:
            self._model.learn_one(x)

    def explain(self, ctx: Context) -> list[Contribution]:
        return []

    def snapshot(self) -> dict[str, Any]:
        held = self._per_metric if self._supervised else self._model
        return {
            "river": river_version(),
            "model": pickle.dumps(held, protocol=4),
            "n": self._n,
            "mean": self._mean,
            "var": self._var,
        }

    def restore(self, data: dict[str, Any]) -> None:
        if data.get("river") != river_version():
            raise RuntimeError(
                f"detector.model.custom {self.name!r}: the state holds a River {data.get('river')} "
                f"model and this job runs River {river_version()}; River's pickles do not move "
                "between versions: start this model fresh under a new name, or run the old version"
            )
        held = pickle.loads(data["model"])  # noqa: S301 (the job's own checkpointed state)
        if self._supervised:
            self._per_metric = held
        else:
            self._model = held
        self._n = int(data["n"])
        self._mean = float(data["mean"])
        self._var = float(data["var"])


def _is_supervised(model: Any) -> bool:
    from river.anomaly.base import SupervisedAnomalyDetector

    return isinstance(model, SupervisedAnomalyDetector)


class ArtifactModel:
    """An entity's offline-trained model from an artifact (see the module docstring)."""

    smoothing = 1
    reads_windows = False

    def __init__(self, spec: CustomModel, entity: str, half_life: float, min_updates: int) -> None:
        artifact = load_artifact(spec.path)
        self.name = f"{spec.name}@{artifact.version}"
        self.calibration = calibration_for(half_life, min_updates)
        self._features = artifact.features
        self._scorer = artifact.scorer_for(entity)

    def _vector(self, ctx: Context) -> list[float] | None:
        if self._scorer is None:
            return None
        metrics = ctx.metrics
        try:
            return [metrics[f] for f in self._features]
        except KeyError:
            return None

    def score_one(self, ctx: Context) -> float | None:
        x = self._vector(ctx)
        return None if x is None or self._scorer is None else self._scorer.raw(x)

    def applies(self, ctx: Context) -> bool:
        return self._vector(ctx) is not None

    def ready(self, ctx: Context) -> bool:
        return True

    def learns_calibration(self, ctx: Context) -> bool:
        return True

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        """Nothing: the model was trained offline."""

    def explain(self, ctx: Context) -> list[Contribution]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, data: dict[str, Any]) -> None:
        """Nothing to restore: the artifact is the model."""


def build_custom(
    spec: CustomModel,
    entity: str,
    half_life: float,
    min_updates: int,
    learn_anomalies: bool,
) -> RiverModel | ArtifactModel:
    """The custom model ``spec`` for ``entity`` (an artifact is read once per process, or
    taken from the bytes the operator shipped: :func:`udfs.core.models.artifact.load_artifact`)."""
    if spec.kind == "river":
        return RiverModel(spec, half_life, min_updates, learn_anomalies)
    return ArtifactModel(spec, entity, half_life, min_updates)
