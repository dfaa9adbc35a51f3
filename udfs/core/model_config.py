"""Configuration of the models of :mod:`udfs.core.models` (pure frozen dataclasses, kept
apart from the models so that a compiled copy of a model takes them as they are)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExtremesConfig", "MultivariateConfig", "SeasonalConfig"]


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
class SeasonalConfig:
    """The ``seasonal`` model (:mod:`udfs.core.models.seasonal`).

    Parameters
    ----------
    slots
        Slots of the day (UTC event time) the profile keeps per metric.
    half_life_days
        Event time after which a slot's past counts half.
    min_days
        Distinct days a slot must have been seen on before it is trusted (until then the
        metric is scored against its trailing level).
    level_half_life
        Events after which the trailing level's past counts half.
    floor_fraction
        A standard deviation is at least this share of the metric's recent range.
    max_metrics
        Most metrics an entity keeps a profile for.
    """

    slots: int = 24
    half_life_days: float = 7.0
    min_days: int = 3
    level_half_life: float = 300.0
    floor_fraction: float = 1e-3
    max_metrics: int = 64

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 1 <= self.slots <= 1440 or 86_400_000 % self.slots:
            problems.append(f"slots must divide a day in ms and be in [1, 1440], got {self.slots}")
        if not 0.01 <= self.half_life_days <= 3650:
            problems.append(f"half_life_days must be in [0.01, 3650], got {self.half_life_days}")
        _at_least(problems, "min_days", self.min_days, 1)
        _at_least(problems, "level_half_life", self.level_half_life, 1)
        if not 0.0 <= self.floor_fraction <= 1.0:
            problems.append(f"floor_fraction must be in [0, 1], got {self.floor_fraction}")
        _at_least(problems, "max_metrics", self.max_metrics, 1)
        _check(problems)


@dataclass(frozen=True)
class MultivariateConfig:
    """The ``multivariate`` model (:mod:`udfs.core.models.multivariate`).

    Parameters
    ----------
    max_metrics
        The model covers the first this many metrics of the entity's first event, by name
        (its state grows with their square).
    warmup_events
        Events a baseline learns before it scores.
    grow_events, half_life
        The baseline averages its first ``grow_events`` events equally, then forgets with
        a half life of ``half_life`` events.
    shrink
        Share of the identity in the correlation matrix (shrinkage, in [0, 1]).
    floor_range, floor_mean
        A metric's standard deviation is at least ``floor_range`` times its running range
        plus ``floor_mean`` times its running mean's magnitude.
    zcap
        Standardised values are clipped at +-``zcap``.
    gate, gate_half_life
        An event with a distance above ``gate`` times the running median distance (a
        decayed histogram of half life ``gate_half_life`` events) is not learned.
    slots, half_life_days, min_days, winsor
        The time-of-day profile: ``slots`` slots with linear interpolation, forgetting with
        a half life of ``half_life_days`` days, ready once both slots of an event's time
        were seen on ``min_days`` distinct days, learning values winsorised at ``winsor``
        residual standard deviations.
    """

    max_metrics: int = 32
    warmup_events: int = 100
    grow_events: int = 300
    half_life: float = 5_000.0
    shrink: float = 0.3
    floor_range: float = 0.1
    floor_mean: float = 0.002
    zcap: float = 8.0
    gate: float = 3.0
    gate_half_life: float = 1_000.0
    slots: int = 48
    half_life_days: float = 7.0
    min_days: int = 2
    winsor: float = 3.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 2 <= self.max_metrics <= 128:
            problems.append(f"max_metrics must be in [2, 128], got {self.max_metrics}")
        _at_least(problems, "warmup_events", self.warmup_events, 1)
        _at_least(problems, "grow_events", self.grow_events, 1)
        _at_least(problems, "half_life", self.half_life, 1)
        _at_least(problems, "gate_half_life", self.gate_half_life, 1)
        if not 0.0 <= self.shrink <= 1.0:
            problems.append(f"shrink must be in [0, 1], got {self.shrink}")
        for name in ("floor_range", "floor_mean"):
            value = getattr(self, name)
            if not 0.0 <= value <= 10.0:
                problems.append(f"{name} must be in [0, 10], got {value}")
        _at_least(problems, "zcap", self.zcap, 0.1)
        _at_least(problems, "gate", self.gate, 1.0)
        _at_least(problems, "winsor", self.winsor, 0.1)
        if not 1 <= self.slots <= 1440:
            problems.append(f"slots must be in [1, 1440], got {self.slots}")
        if not 0.01 <= self.half_life_days <= 3650:
            problems.append(f"half_life_days must be in [0.01, 3650], got {self.half_life_days}")
        _at_least(problems, "min_days", self.min_days, 1)
        _check(problems)
