"""The scoring stage of an entity's detector: window features, the models, and their
calibrated, combined rarity.

:class:`Scorer` owns

1. the entity's **window features** (:class:`udfs.core.features.EntityFeatures`): every
   window's statistics of every metric, computed from the history before the event;
2. the **models** of ``model.ensemble`` (:mod:`udfs.core.models`), each behind the same
   small interface (``score_one``, ``learn_one``, ``explain``, ``snapshot``);
3. one **calibration** per model (:class:`udfs.core.calibration.DecayedHistogram`): a raw
   score becomes *rarity* ``u = -log10(share of the entity's past scores at or above it)``,
   in decades (``u = 3``: one in a thousand), so scores of different models and entities
   mean the same thing;
4. the **combination** of the models' rarities (``model.combine``): ``fisher`` (Fisher's
   method: ``-log10`` of the chi-square survival of ``2 ln(10) sum(u)`` with ``2k``
   degrees of freedom, so models that agree reinforce each other), ``max`` or ``mean``.

An event is scored before anything learns it. It is *ready* (may alert) once every model
that applies has scored enough of the entity's own events (``model.min_calibration_events``
calibrated scores): readiness is counted in the entity's events, whatever its cadence.
"""

from __future__ import annotations

import math
from typing import Any

from udfs.core.calibration import DecayedHistogram, linear_edges, stored_length
from udfs.core.config import DetectorConfig
from udfs.core.decision import Contribution
from udfs.core.events import Event
from udfs.core.features import EntityFeatures
from udfs.core.models import build_models
from udfs.core.models.base import Calibration, Context, Model

__all__ = ["Scored", "Scorer", "fisher"]

_LN10 = math.log(10.0)


def fisher(rarities: list[float]) -> float:
    """Fisher's combination of independent rarities (decades) into one, in decades.

    With ``h = ln(10) * sum(u)``, the chi-square survival of ``2h`` with ``2k`` degrees of
    freedom is ``exp(-h) * sum(h**i / i!, i < k)``; its ``-log10``. One rarity is returned
    unchanged; two that agree count for more than either alone.

    >>> round(fisher([3.0]), 9), round(fisher([3.0, 3.0]), 4), round(fisher([3.0, 0.0]), 4)
    (3.0, 4.8293, 2.1019)
    """
    k = len(rarities)
    if k == 0:
        return 0.0
    if k == 1:
        return rarities[0]
    h = _LN10 * sum(rarities)
    if h <= 0.0:
        return 0.0
    term = 1.0
    rest = 0.0
    for i in range(1, k):
        term *= h / i
        rest += term
    u = (h - math.log1p(rest)) / _LN10
    return u if u > 0.0 else 0.0


class Scored:
    """What the scoring stage made of one event."""

    __slots__ = ("ctx", "raw", "smooth", "rarity", "learns", "u", "u_score", "score", "ready")

    def __init__(
        self,
        ctx: Context,
        raw: list[float | None],
        smooth: list[float | None],
        rarity: list[float],
        learns: list[bool],
        u: float,
        u_score: float,
        score: float,
        ready: bool,
    ) -> None:
        self.ctx = ctx
        self.raw = raw  # per model; None: the model did not score
        self.smooth = smooth  # per model, its smoothed score (None: not smoothed)
        self.rarity = rarity  # per model, decades (of the raw score)
        self.learns = learns  # per model: its scores train its calibration
        self.u = u  # combined rarity of the raw scores (decades): what decisions read
        self.u_score = u_score  # the same of the smoothed scores
        self.score = score  # the ranking: max(u_score, its running mean), decades
        self.ready = ready


def _histogram(cal: Calibration) -> DecayedHistogram:
    return DecayedHistogram(linear_edges(0.0, cal.bins * cal.width, cal.bins), cal.half_life)


def _coordinate(cal: Calibration, raw: float) -> float:
    return math.log1p(raw) if cal.log else raw


def _rarity(cal: Calibration, hist: DecayedHistogram, raw: float) -> float:
    x = _coordinate(cal, raw)
    if cal.extrapolate > 0.0 or cal.tail_scale <= 0.0:
        return hist.rarity(x, cal.prior, cal.extrapolate)
    return -math.log10(hist.survival(x, cal.tail_scale, cal.prior))


class Scorer:
    """Features, models and calibrations of one entity (see the module docstring)."""

    __slots__ = (
        "entity",
        "cfg",
        "features",
        "models",
        "hists",
        "smooth_hists",
        "smoothed",
        "level",
        "metrics",
        "n_scored",
        "with_features",
        "_windows",
        "_needs_windows",
    )

    def __init__(self, entity: str, cfg: DetectorConfig, with_features: bool = True) -> None:
        self.entity = entity
        self.cfg = cfg
        self.with_features = with_features
        self.features = EntityFeatures(cfg.features)
        self.models: list[Model] = build_models(cfg, entity)
        self.hists = [_histogram(m.calibration) for m in self.models]
        # A second calibration for a model whose ranking reads its smoothed score.
        self.smooth_hists: list[DecayedHistogram | None] = [
            _histogram(m.calibration) if m.smoothing > 1 else None for m in self.models
        ]
        self.smoothed: list[float | None] = [None] * len(self.models)
        self.level: float | None = None  # running mean of the combined rarity (the ranking)
        self.metrics: tuple[str, ...] = ()  # the entity's first event's, sorted
        self.n_scored = 0
        self._windows = tuple((w.name, w.length_ms) for w in cfg.features.windows)
        # The window features are kept when a model reads them, or score records carry them.
        self._needs_windows = with_features or any(
            m.name in ("window", "hst") or getattr(m, "reads_windows", False) for m in self.models
        )

    def score(self, ev: Event, learn: bool) -> Scored:
        """Score ``ev`` (the windows take it in; nothing else learns it yet)."""
        cfg = self.cfg
        values: dict[str, float] = {}
        ready: dict[str, bool] = {}
        if self._needs_windows:
            before = None if learn else self.features.snapshot()
            values, ready = self.features.update(ev.ts_ms, ev.metrics, self.with_features)
            if before is not None:  # scored against the windows, which do not learn it
                self.features = EntityFeatures.restore(cfg.features, before)
        if not self.metrics:
            self.metrics = tuple(sorted(ev.metrics))
        ctx = Context(
            ev.ts_ms, ev.metrics, values, ready, self._windows, cfg.model.std_floor_fraction
        )
        n = len(self.models)
        raws: list[float | None] = [None] * n
        smooths: list[float | None] = [None] * n
        rarities = [0.0] * n
        learns = [False] * n
        alert_parts: list[float] = []
        score_parts: list[float] = []
        ready_all = True
        for i, (model, hist) in enumerate(zip(self.models, self.hists, strict=True)):
            raw = model.score_one(ctx)
            if raw is None:
                if model.applies(ctx):
                    ready_all = False
                    alert_parts.append(0.0)
                    score_parts.append(0.0)
                continue
            cal = model.calibration
            raws[i] = raw
            rarity = _rarity(cal, hist, raw)
            rarities[i] = rarity
            learns[i] = model.learns_calibration(ctx)
            alert_parts.append(rarity)
            smooth_hist = self.smooth_hists[i]
            if smooth_hist is not None:
                previous = self.smoothed[i]
                span = model.smoothing
                sm = raw if previous is None else previous + 2.0 / (span + 1) * (raw - previous)
                self.smoothed[i] = sm
                smooths[i] = sm
                score_parts.append(_rarity(cal, smooth_hist, sm))
            else:
                score_parts.append(rarity)
            ready_all = ready_all and model.ready(ctx) and hist.updates >= cal.min_updates
        how = cfg.model.combine
        u = _combine(how, alert_parts)
        u_score = _combine(how, score_parts)
        span = cfg.model.score_smoothing
        level = self.level
        level = u_score if level is None else level + 2.0 / (span + 1) * (u_score - level)
        self.level = level
        score = u_score if span <= 1 or u_score > level else level
        self.n_scored += 1
        return Scored(
            ctx, raws, smooths, rarities, learns, u, u_score, score, ready_all and bool(alert_parts)
        )

    def learn(self, scored: Scored, unusual: bool, threshold: float) -> None:
        """The calibrations and the models learn a scored event (the windows already have):
        a calibration learns its model's score when the model says so; with
        ``model.clip_calibration`` an unusual event enters at most at the threshold."""
        mc = self.cfg.model
        for i, (model, hist) in enumerate(zip(self.models, self.hists, strict=True)):
            raw = scored.raw[i]
            if raw is not None and scored.learns[i]:
                cal = model.calibration
                x = _coordinate(cal, raw)
                if unusual and mc.clip_calibration:
                    x_thr = hist.quantile_upper(10.0**-threshold)
                    if x > x_thr:
                        x = x_thr
                hist.update(x)
                smooth_hist = self.smooth_hists[i]
                sm = scored.smooth[i]
                if smooth_hist is not None and sm is not None:
                    smooth_hist.update(_coordinate(cal, sm))
            model.learn_one(scored.ctx, unusual)

    def explain(self, scored: Scored) -> list[Contribution]:
        """The models' contributions to the event's score, the rarest model's first."""
        order = sorted(range(len(self.models)), key=lambda i: -scored.rarity[i])
        out: list[Contribution] = []
        for i in order:
            out.extend(self.models[i].explain(scored.ctx))
        return out

    def raw_record(self, scored: Scored) -> dict[str, float]:
        """The raw scores by model name (for the score record)."""
        return {m.name: r for m, r in zip(self.models, scored.raw, strict=True) if r is not None}

    def rarity_record(self, scored: Scored) -> dict[str, float]:
        """Each scoring model's rarity of the event (decades), by model name."""
        return {
            m.name: round(u, 4)
            for m, r, u in zip(self.models, scored.raw, scored.rarity, strict=True)
            if r is not None
        }

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "features": self.features.pack(),
            "metrics": list(self.metrics),
            "models": {m.name: m.snapshot() for m in self.models},
            "calibrations": {m.name: h.snapshot() for m, h in zip(self.models, self.hists, strict=True)},
            "smoothed": {
                m.name: [self.smoothed[i], h.snapshot()]
                for i, (m, h) in enumerate(zip(self.models, self.smooth_hists, strict=True))
                if h is not None
            },
            "level": self.level,
            "n_scored": self.n_scored,
        }

    @classmethod
    def restore(
        cls, entity: str, cfg: DetectorConfig, data: dict[str, Any], with_features: bool = True
    ) -> Scorer:
        """A scorer from :meth:`snapshot`; a model or calibration the snapshot does not hold
        (another ensemble) starts fresh."""
        scorer = cls(entity, cfg, with_features)
        scorer.features = EntityFeatures.restore(cfg.features, data["features"])
        scorer.metrics = tuple(data["metrics"])
        models = data["models"]
        cals = data["calibrations"]
        smoothed = data.get("smoothed", {})
        for i, (model, hist) in enumerate(zip(scorer.models, scorer.hists, strict=True)):
            if model.name in models:
                model.restore(models[model.name])
            snap = cals.get(model.name)
            if snap is not None and stored_length(snap[0]) == len(hist.edges) - 1:
                hist.restore(snap)
            smooth_hist = scorer.smooth_hists[i]
            kept = smoothed.get(model.name)
            if (
                smooth_hist is not None
                and kept is not None
                and stored_length(kept[1][0]) == len(smooth_hist.edges) - 1
            ):
                scorer.smoothed[i] = kept[0]
                smooth_hist.restore(kept[1])
        scorer.level = data.get("level")
        scorer.n_scored = int(data["n_scored"])
        return scorer


def _combine(how: str, rarities: list[float]) -> float:
    if not rarities:
        return 0.0
    if how == "fisher":
        return fisher(rarities)
    if how == "max":
        return max(rarities)
    return sum(rarities) / len(rarities)


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.scoring":
    from udfs.core.native import bind

    bind(globals(), __file__, "scoring")
