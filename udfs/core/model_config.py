"""Configuration of the models of :mod:`udfs.core.models` (pure frozen dataclasses, kept
apart from the models so that a compiled copy of a model takes them as they are)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CustomModel", "ExtremesConfig", "ResidualConfig"]


def _check(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _at_least(problems: list[str], name: str, value: float, low: float) -> None:
    if not value >= low:
        problems.append(f"{name} must be >= {low}, got {value}")


@dataclass(frozen=True)
class ExtremesConfig:
    """The ``extremes`` model (:mod:`udfs.core.models.extremes`).

    Parameters
    ----------
    blocks, block_events
        The range of a metric is its min and max over the last ``blocks`` completed blocks
        of ``block_events`` events and the current block.
    max_metrics
        Most metrics an entity keeps a range for.
    """

    blocks: int = 8
    block_events: int = 2_500
    max_metrics: int = 64

    def __post_init__(self) -> None:
        problems: list[str] = []
        _at_least(problems, "blocks", self.blocks, 1)
        _at_least(problems, "block_events", self.block_events, 1)
        _at_least(problems, "max_metrics", self.max_metrics, 1)
        _check(problems)


@dataclass(frozen=True)
class ResidualConfig:
    """The ``residual`` model (:mod:`udfs.core.models.residual`).

    Parameters
    ----------
    max_metrics
        The model covers the first this many metrics of the entity's first event, by name
        (its state grows with their square).
    level_half_life
        Events after which the past counts half in a metric's trailing level.
    slots
        Slots of the day (UTC event time) of the profile of the residual from the level.
    half_life_days
        Days of a slot's visits after which its past counts half.
    min_days
        Distinct days a slot must have been seen on before it is trusted (until then the
        values themselves are modelled).
    warmup_events
        Events a covariance learns before it scores.
    grow_events, half_life
        A covariance averages its first ``grow_events`` events equally, then forgets with a
        half life of ``half_life`` events.
    shrink
        Share of the identity in the correlation matrix (shrinkage, in [0, 1]).
    floor_range, floor_mean
        A metric's standard deviation is at least ``floor_range`` times its running range
        plus ``floor_mean`` times its running mean's magnitude.
    zcap
        Standardised values are clipped at +-``zcap``.
    refactor_every
        A covariance's Cholesky factor is refreshed after this many updates.
    gate_z, gate_half_life
        An event with a distance above the chi-square quantile at ``gate_z`` standard
        deviations over its median, times the running median distance (a decayed histogram
        of half life ``gate_half_life`` events), is not learned by the covariances.
    exclude_after
        After this many consecutive events not learned, the model's scores stop training its
        calibration until one is learned again.
    smoothing
        Span (events) of the exponential smoothing of the distance before it is calibrated
        for ``anomaly_score`` (alerts read the unsmoothed one; 1: none).
    """

    max_metrics: int = 32
    level_half_life: float = 300.0
    slots: int = 24
    half_life_days: float = 7.0
    min_days: int = 3
    warmup_events: int = 100
    grow_events: int = 300
    half_life: float = 5_000.0
    shrink: float = 0.3
    floor_range: float = 0.1
    floor_mean: float = 0.002
    zcap: float = 8.0
    refactor_every: int = 10
    gate_z: float = 2.0
    gate_half_life: float = 1_000.0
    exclude_after: int = 10
    smoothing: int = 3

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 1 <= self.max_metrics <= 128:
            problems.append(f"max_metrics must be in [1, 128], got {self.max_metrics}")
        _at_least(problems, "level_half_life", self.level_half_life, 1)
        if not 1 <= self.slots <= 1440:
            problems.append(f"slots must be in [1, 1440], got {self.slots}")
        if not 0.01 <= self.half_life_days <= 3650:
            problems.append(f"half_life_days must be in [0.01, 3650], got {self.half_life_days}")
        _at_least(problems, "min_days", self.min_days, 1)
        _at_least(problems, "warmup_events", self.warmup_events, 1)
        _at_least(problems, "grow_events", self.grow_events, 1)
        _at_least(problems, "half_life", self.half_life, 1)
        if not 0.0 <= self.shrink <= 1.0:
            problems.append(f"shrink must be in [0, 1], got {self.shrink}")
        for name in ("floor_range", "floor_mean"):
            value = getattr(self, name)
            if not 0.0 <= value <= 10.0:
                problems.append(f"{name} must be in [0, 10], got {value}")
        _at_least(problems, "zcap", self.zcap, 0.1)
        _at_least(problems, "refactor_every", self.refactor_every, 1)
        if not 0.0 <= self.gate_z <= 10.0:
            problems.append(f"gate_z must be in [0, 10], got {self.gate_z}")
        _at_least(problems, "gate_half_life", self.gate_half_life, 1)
        _at_least(problems, "exclude_after", self.exclude_after, 1)
        _at_least(problems, "smoothing", self.smoothing, 1)
        _check(problems)


@dataclass(frozen=True)
class CustomModel:
    """A model the user brings (:mod:`udfs.core.models.external`), run beside the ensemble.

    Parameters
    ----------
    name
        The model's name in score records and explanations (not one of the built-in names).
    kind
        ``river`` (a River estimator per entity, from ``spec``; needs ``execution.mode:
        process``: River's anomaly module imports scipy.stats, which hangs a thread-mode
        worker) or ``artifact`` (an offline-trained model from ``path``).
    spec
        ``kind: river``: River's pipeline notation, e.g. ``preprocessing.StandardScaler() |
        anomaly.OneClassSVM(nu=0.02)`` (parsed, never evaluated: River estimators and
        literal arguments only), or ``module:function``, a factory of your own returning a
        fresh River estimator.
    path
        ``kind: artifact``: the file ``python -m job train-model`` wrote (read by the
        client at start-up and shipped to the workers with the job).
    input
        ``metrics`` (the event's raw values) or ``features`` (its window features; River
        only: an artifact is trained on metrics).
    """

    name: str
    kind: str
    spec: str = ""
    path: str = ""
    input: str = "metrics"

    def __post_init__(self) -> None:
        problems = []
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            problems.append(f"name must be letters, digits, - or _, got {self.name!r}")
        if self.kind not in ("river", "artifact"):
            problems.append(f"kind must be river or artifact, got {self.kind!r}")
        if self.input not in ("metrics", "features"):
            problems.append(f"input must be metrics or features, got {self.input!r}")
        if self.kind == "river":
            from udfs.core.models.river_spec import is_factory, parse_spec

            if not self.spec:
                problems.append("spec is required when kind is river")
            elif not is_factory(self.spec):
                try:
                    parse_spec(self.spec)
                except ValueError as exc:
                    problems.append(f"spec: {exc}")
        if self.kind == "artifact":
            if not self.path:
                problems.append("path is required when kind is artifact")
            if self.input != "metrics":
                problems.append("input must be metrics for an artifact (it is trained on metrics)")
        _check(problems)
