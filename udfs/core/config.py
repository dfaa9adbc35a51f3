"""The detector's typed configuration: what each worker receives (pure, no file or env access).

The job-level tree (:mod:`job.config`) wraps :class:`DetectorConfig` with the source, sink and
execution settings, loads it from YAML and applies ``--set`` overrides. Every class here is a
frozen dataclass that validates itself in ``__post_init__`` and reports every problem it
finds at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from udfs.core.alert_filter import FilterConfig
from udfs.core.alerts import AlertConfig
from udfs.core.drift import DriftConfig
from udfs.core.features import FeatureConfig
from udfs.core.feedback import FeedbackConfig
from udfs.core.maintenance import MaintenanceConfig
from udfs.core.model_config import CustomModel, ExtremesConfig, ResidualConfig
from udfs.core.rules import RulesConfig
from udfs.core.staleness import StalenessConfig
from udfs.core.typed import build, merge, plain

#: The models :mod:`udfs.core.models` knows, by name.
MODEL_NAMES = ("extremes", "residual", "window", "hst")

__all__ = [
    "MODEL_NAMES",
    "ConfigStamp",
    "DetectorConfig",
    "ExtremesConfig",
    "ResidualConfig",
    "LatenessConfig",
    "ModelConfig",
    "ThresholdConfig",
    "config_from_stamp",
    "config_stamp",
]


def _check(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class LatenessConfig:
    """Event-time order per entity.

    Parameters
    ----------
    max_out_of_orderness_ms
        Events of one entity may arrive up to this much out of timestamp order; they are
        buffered and processed in timestamp order. An event older than the entity's newest
        timestamp minus this bound is late: it goes to the late output, unscored. The Flink
        watermark strategy uses the same bound.
    idle_ttl_ms
        An entity with no event for this long (event time) is forgotten: its keyed state is
        cleared by a timer, and if it comes back it starts fresh.
    max_clock_jump_ms
        An event more than this far ahead of its entity's newest event is held apart (a
        wrong clock, or a real gap in the entity's reporting): it advances nothing until
        the entity's next events tell which. When ``clock_confirm_events`` events in all
        are that far ahead, the clock really moved and they are let in, in arrival order;
        when instead that many events of the old timeline come first, the held ones are
        dead letters (``clock_jump``); one the old timeline catches up with, or the
        watermark passes, is let in. ``0`` turns the check off.
    clock_confirm_events
        How many events decide a held jump (see ``max_clock_jump_ms``); it is also the most
        events an entity holds.
    max_buffered_events
        Most events an entity keeps waiting for order. Beyond it the oldest are released at
        once (the entity's frontier moves up to them), so an entity sending more than this
        many events within ``max_out_of_orderness_ms`` has a shorter effective bound rather
        than an unbounded buffer.
    """

    max_out_of_orderness_ms: int = 5_000
    idle_ttl_ms: int = 2 * 86_400_000
    max_clock_jump_ms: int = 3_600_000
    clock_confirm_events: int = 3
    max_buffered_events: int = 1_024

    def __post_init__(self) -> None:
        problems = []
        if self.max_out_of_orderness_ms < 0:
            problems.append(
                f"max_out_of_orderness_ms must be >= 0, got {self.max_out_of_orderness_ms}"
            )
        if self.idle_ttl_ms <= 0:
            problems.append(f"idle_ttl_ms must be > 0, got {self.idle_ttl_ms}")
        if self.max_clock_jump_ms < 0:
            problems.append(f"max_clock_jump_ms must be >= 0, got {self.max_clock_jump_ms}")
        if self.max_buffered_events < 1:
            problems.append(f"max_buffered_events must be >= 1, got {self.max_buffered_events}")
        if not 1 <= self.clock_confirm_events <= 64:
            problems.append(
                f"clock_confirm_events must be in [1, 64], got {self.clock_confirm_events}"
            )
        _check(problems)


@dataclass(frozen=True)
class ModelConfig:
    """The models of the scoring stage and how their calibrated rarities combine.

    Parameters
    ----------
    ensemble
        The models every entity runs (:mod:`udfs.core.models`): ``extremes`` (a value beyond
        the metric's recent range), ``residual`` (the distance from the entity's seasonal
        baseline, jointly over its metrics), ``window`` (the largest |z| against the sliding
        windows) and ``hst`` (Half-Space Trees over the window features). Each model's raw
        score is calibrated into rarity against the entity's own past, and the rarities are
        combined. The window features are kept only when ``window`` or ``hst`` runs (or score
        records carry them, ``sink.emit_features``).
    combine
        How the models' rarities combine: ``fisher`` (Fisher's method: models that agree
        reinforce each other), ``max`` (the rarest) or ``mean``.
    score_smoothing
        ``anomaly_score`` is the larger of the event's combined rarity and its running mean
        over about this many events (exponential, span): a sustained anomaly ranks above
        isolated blips of the same size, a single spike keeps its own value (1: the rarity
        alone). Decisions read the unsmoothed rarity.
    hst_trees, hst_height, hst_window, seed
        Half-Space Trees parameters (River's meaning). Every entity shares the tree structure
        built from ``seed``; only its node masses are per-entity state.
    z_squash
        Feature z-scores enter the trees as ``0.5 + 0.5 * tanh(z / z_squash)`` (in [0, 1]).
    calibration_half_life
        Events after which a past raw score counts half in the per-entity calibration.
    tail_scale
        Scale of the exponential tail beyond the highest raw score seen of the ``window``
        model's calibration (in its coordinate, ``log1p(|z|)``).
    min_calibration_events
        Scores an entity needs before it may alert (cadence-free readiness: counted in the
        entity's own events).
    std_floor_fraction
        A window's z uses at least this share of the std of the metric's longest ready window
        as its noise scale: a 5-minute window's std comes from a handful of events and alone
        would make every blip look extreme.
    learn_anomalies
        When false (default), an event judged anomalous does not train the trees, so an
        anomaly does not become normal.
    clip_calibration
        When true, an event judged unusual enters a calibration at most at the raw score of
        the current threshold, so an incident does not teach the entity that its own
        extremes are ordinary.
    custom
        Models you bring, run beside ``ensemble`` and combined with it the same way: River
        estimators by spec, or offline-trained scikit-learn models as artifacts of ``python
        -m job train-model`` (each entry: ``name``, ``kind``, ``spec`` or ``path``,
        ``input``; see ``docs/custom-models.md``).
    """

    ensemble: tuple[str, ...] = ("extremes", "residual")
    combine: str = "fisher"
    score_smoothing: int = 10
    hst_trees: int = 10
    hst_height: int = 8
    hst_window: int = 250
    seed: int = 42
    z_squash: float = 3.0
    calibration_half_life: float = 20_000.0
    tail_scale: float = 0.25
    min_calibration_events: int = 100
    std_floor_fraction: float = 0.5
    learn_anomalies: bool = False
    clip_calibration: bool = False
    custom: tuple[CustomModel, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.hst_trees < 1:
            problems.append(f"hst_trees must be >= 1, got {self.hst_trees}")
        if not 1 <= self.hst_height <= 12:
            problems.append(f"hst_height must be in [1, 12], got {self.hst_height}")
        if self.hst_window < 1:
            problems.append(f"hst_window must be >= 1, got {self.hst_window}")
        if self.z_squash <= 0:
            problems.append(f"z_squash must be > 0, got {self.z_squash}")
        ensemble = tuple(self.ensemble)
        object.__setattr__(self, "ensemble", ensemble)
        unknown = [m for m in ensemble if m not in MODEL_NAMES]
        if unknown or not ensemble or len(set(ensemble)) != len(ensemble):
            problems.append(
                f"ensemble must name distinct models of {', '.join(MODEL_NAMES)}; got {list(ensemble)}"
            )
        names = [c.name for c in self.custom]
        clash = sorted({n for n in names if n in MODEL_NAMES or names.count(n) > 1})
        if clash:
            problems.append(f"custom model names must be distinct and not built-in: {clash}")
        if self.combine not in ("fisher", "max", "mean"):
            problems.append(f"combine must be one of fisher, max, mean; got {self.combine!r}")
        if self.score_smoothing < 1:
            problems.append(f"score_smoothing must be >= 1, got {self.score_smoothing}")
        if not self.calibration_half_life >= 1:
            problems.append(
                f"calibration_half_life must be >= 1 (events), got {self.calibration_half_life}"
            )
        if self.tail_scale < 0:
            problems.append(f"tail_scale must be >= 0, got {self.tail_scale}")
        if not 0.0 <= self.std_floor_fraction <= 10.0:
            problems.append(f"std_floor_fraction must be in [0, 10], got {self.std_floor_fraction}")
        if self.min_calibration_events < 0:
            problems.append(
                f"min_calibration_events must be >= 0, got {self.min_calibration_events}"
            )
        _check(problems)


@dataclass(frozen=True)
class ThresholdConfig:
    """Per-entity alert thresholds and severity tiers.

    Parameters
    ----------
    rarity
        An event alerts when its combined rarity reaches this many decades (1.75: rarer than
        about 1 in 56 against the entity's own past, by every model together). The rarity is
        already per entity; feedback (``detector.feedback``) raises an entity's threshold.
    target_alert_rate
        When above 0, the threshold is also at least the entity's own ``1 - target_alert_rate``
        quantile of its rarity (an alert budget per event), with ``rarity + fallback_margin``
        while the entity has fewer than ``min_events`` scores. 0 (the default): ``rarity``,
        raised for young entities (``fallback_margin``).
    min_events
        How many scored events make an entity no longer young (and, with
        ``target_alert_rate``, let its own quantile count). Counted in the entity's own
        events, whatever its cadence.
    half_life
        Decay half life (events) of the entity's rarity distribution (``target_alert_rate``).
    fallback_margin
        Decades added to the threshold of a young entity: all of it on its first scored
        event, fading linearly to none at ``min_events`` (with ``target_alert_rate``: all of
        it until then). Its models have seen little of its normal range and none of its
        daily cycle yet, so ordinary movements look new; new entities are judged more
        strictly, not less, and a real incident still alerts, at a lower severity.
    warning_factor, critical_factor
        An alert is ``warning`` when its event is this many times rarer than the threshold,
        ``critical`` when ``critical_factor`` times rarer; otherwise ``info``.
    """

    rarity: float = 1.75
    target_alert_rate: float = 0.0
    min_events: int = 2_000
    half_life: float = 50_000.0
    fallback_margin: float = 2.0
    warning_factor: float = 10.0
    critical_factor: float = 100.0

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.rarity <= 15.0:
            problems.append(f"rarity must be in (0, 15] decades, got {self.rarity}")
        if not 0.0 <= self.target_alert_rate < 0.5:
            problems.append(f"target_alert_rate must be in [0, 0.5), got {self.target_alert_rate}")
        if self.min_events < 0:
            problems.append(f"min_events must be >= 0, got {self.min_events}")
        if not self.half_life >= 1:
            problems.append(f"half_life must be >= 1 (events), got {self.half_life}")
        if self.fallback_margin < 0:
            problems.append(f"fallback_margin must be >= 0, got {self.fallback_margin}")
        if not 1.0 <= self.warning_factor <= self.critical_factor:
            problems.append(
                "severity factors must satisfy 1 <= warning_factor <= critical_factor, got "
                f"{self.warning_factor} and {self.critical_factor}"
            )
        _check(problems)


@dataclass(frozen=True)
class DetectorConfig:
    """Everything the per-entity detector needs; the keyed operator receives exactly this.

    Parameters
    ----------
    config_version
        A name for this configuration, stamped on every alert and drift record it decides
        (a live change sets its own).
    """

    lateness: LatenessConfig = field(default_factory=LatenessConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    extremes: ExtremesConfig = field(default_factory=ExtremesConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    staleness: StalenessConfig = field(default_factory=StalenessConfig)
    config_version: str = "1"


# -- a compact record of the configuration, kept with an entity's journaled state ----------

ConfigStamp = tuple[str, str]


def _defaults_key() -> str:
    text = json.dumps(plain(DetectorConfig()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _diff(mine: Any, base: Any) -> Any:
    """The parts of plain data ``mine`` that differ from ``base`` (mappings key by key)."""
    return {
        k: (_diff(v, base[k]) if isinstance(v, dict) and isinstance(base.get(k), dict) else v)
        for k, v in mine.items()
        if k not in base or v != base[k]
    }


def config_stamp(cfg: DetectorConfig) -> ConfigStamp:
    """``(key of this code's defaults, JSON of the fields of cfg that differ from them)``.

    The keyed operator stores it with an entity's journal (udfs/detect.py): a restore under
    another configuration can then replay the journal under the one it was written under.
    The defaults' key guards against reading a difference against other defaults (after an
    upgrade that changed one).

    >>> config_stamp(DetectorConfig())[1]
    '{}'
    """
    diff = _diff(plain(cfg), plain(DetectorConfig()))
    return _defaults_key(), json.dumps(diff, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=8)
def config_from_stamp(stamp: ConfigStamp) -> DetectorConfig | None:
    """The configuration a :func:`config_stamp` records, or None when it cannot be rebuilt
    (written against other defaults, or no longer valid). Remembered: after a restart under
    a new configuration every entity's first read asks for the same one."""
    if stamp[0] != _defaults_key():
        return None
    problems: list[str] = []
    data = merge(plain(DetectorConfig()), json.loads(stamp[1]))
    try:
        cfg = build(DetectorConfig, data, "detector", problems)
    except (TypeError, ValueError):
        return None
    return None if problems or cfg is None else cfg
