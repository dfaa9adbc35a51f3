"""The decision stage of an entity's detector: from a calibrated score to alert records.

:class:`Decider` owns what turns the scoring stage's combined *rarity* (decades: ``u = 3``
is one in a thousand against the entity's own past, :mod:`udfs.core.scoring`) into what an
on-call engineer sees:

1. the entity's **threshold** (:class:`udfs.core.calibration.AdaptiveThreshold`), raised by
   operators' false-positive verdicts (**feedback**, :mod:`udfs.core.feedback`);
2. **hysteresis**: while an episode is open, an event continues it within
   ``alerts.hysteresis_decades`` below the threshold;
3. **maintenance** windows hold alerts back (counted); **rules** (:mod:`udfs.core.rules`)
   may rule out the leading features;
4. **severity** by how many times rarer than the threshold the event is;
5. the **explanation**: the leading contributions of the models (feature, actual,
   expected, z);
6. **episodes** (:mod:`udfs.core.alerts`): one ``open``, ``escalate`` on rising severity,
   ``resolved`` after a quiet period, cooldown and hourly cap; then the optional trained
   **filter** (:mod:`udfs.core.alert_filter`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from udfs.core.alert_filter import drops
from udfs.core.alerts import EpisodeTracker
from udfs.core.calibration import AdaptiveThreshold, rarity_to_score
from udfs.core.config import DetectorConfig
from udfs.core.feedback import ThresholdFeedback, Verdict
from udfs.core.rules import allowed as rule_allows
from udfs.core.rules import rule_for

__all__ = ["Contribution", "Decider", "Decision"]

_THRESHOLD_CLIP = 0.5  # decades above the current threshold (the threshold's own update)


class Contribution(NamedTuple):
    """One model's reading of one metric, for the explanation: ``feature`` (a name such
    as ``cpu.1h.zscore`` or ``cpu.seasonal``), the ``metric``, the value (``actual``),
    what the model expected, and how far apart in the model's own units of spread (``z``)."""

    feature: str
    metric: str
    actual: float
    expected: float
    z: float


class Decision(NamedTuple):
    """What the decider made of one scored event."""

    threshold: float  # rarity the event had to reach (decades), before feedback
    alert_threshold: float  # with the feedback raise
    offset: float  # the feedback raise (decades)
    unusual: bool  # the models' own judgement (what learn-gating reads)
    anomalous: bool  # an alerting event (not in maintenance)
    held_back: bool  # anomalous but inside a maintenance window
    severity: int


# With rules, a contribution may carry an alert when its |z| is at least this share of the
# strongest contribution's.
STRONG_SHARE = 0.5


def _threshold(cfg: DetectorConfig) -> AdaptiveThreshold:
    t = cfg.threshold
    return AdaptiveThreshold(
        t.target_alert_rate, t.min_events, t.half_life, t.fallback_margin, t.rarity
    )


class Decider:
    """Threshold, hysteresis, feedback, severity, explanation and episodes of one entity."""

    __slots__ = ("entity", "cfg", "threshold", "episodes", "feedback", "_warn", "_crit")

    def __init__(self, entity: str, cfg: DetectorConfig) -> None:
        self.entity = entity
        self.cfg = cfg
        self.threshold = _threshold(cfg)
        self.episodes = EpisodeTracker(cfg.alerts, entity)
        self.feedback = ThresholdFeedback(cfg.feedback)
        self._warn = math.log10(cfg.threshold.warning_factor)
        self._crit = math.log10(cfg.threshold.critical_factor)

    def decide(self, ts: int, u: float, ready: bool, maintenance: bool) -> Decision:
        """Judge an event of rarity ``u`` (``ready``: the models have enough history)."""
        thr = self.threshold.current()
        # Hysteresis: an open episode goes on while the event stays within
        # ``hysteresis_decades`` of the threshold, so one incident is one episode even when
        # the baselines start to absorb it.
        bar = thr - self.cfg.alerts.hysteresis_decades if self.episodes.open else thr
        unusual = ready and u >= bar
        offset = self.feedback.offset(ts)
        over = unusual and u >= bar + offset
        anomalous = over and not maintenance
        held_back = maintenance and over
        if held_back:  # counted: it travels on the next alert out (suppressed_before)
            self.episodes.suppress()
        severity = 0
        alert_thr = thr + offset
        if anomalous:
            excess = u - alert_thr
            severity = 2 if excess >= self._crit else 1 if excess >= self._warn else 0
        return Decision(thr, alert_thr, offset, unusual, anomalous, held_back, severity)

    def learn(self, u: float, decision: Decision) -> None:
        """The threshold learns a ready event's rarity, winsorised: a score far above the
        threshold counts as an exceedance without dragging the quantile up with it, so one
        extreme incident does not make the entity deaf for the rest of it."""
        self.threshold.update(min(u, decision.threshold + _THRESHOLD_CLIP))

    def alerts(
        self,
        ts: int,
        u: float,
        decision: Decision,
        contributions: list[Contribution],
        maintenance: bool,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The episode records of an event, and whether it stayed anomalous (the rules may
        rule out every leading contribution)."""
        anomalous = decision.anomalous
        detail: dict[str, Any] = {}
        if anomalous:
            explained = self._explain(u, decision.alert_threshold, contributions)
            if explained is None:
                anomalous = False
            else:
                detail = explained
                if decision.offset > 0.0:
                    detail["threshold_offset"] = round(decision.offset, 6)
        records = self.screened(self.episodes.on_decision(ts, anomalous, decision.severity, detail))
        if maintenance:
            for rec in records:
                rec["maintenance"] = True
        return records, anomalous

    def _explain(
        self, rarity: float, threshold_rarity: float, contributions: list[Contribution]
    ) -> dict[str, Any] | None:
        """The alert body, or None when the rules rule out every leading feature."""
        ranked = sorted(contributions, key=lambda c: (-abs(c.z), c.feature))
        leading = ranked[: self.cfg.alerts.top_features]
        rules = self.cfg.rules
        if rules.rules and leading:
            # Only the strongest contributions may carry an alert (|z| at least half the
            # top one's): a weak allowed feature does not stand in for a strong one the
            # rules rule out.
            strong = STRONG_SHARE * abs(leading[0].z)
            leading = [
                c
                for c in leading
                if abs(c.z) >= strong and rule_allows(rules, c.metric, c.actual, c.expected, c.z)
            ]
            if not leading:
                return None
        top: list[dict[str, Any]] = [
            {"feature": c.feature, "actual": c.actual, "expected": c.expected, "z": round(c.z, 4)}
            for c in leading
        ]
        direction = "dip" if leading and leading[0].z < 0 else "spike"
        detail: dict[str, Any] = {
            "score": round(rarity_to_score(rarity), 6),
            "threshold": round(rarity_to_score(threshold_rarity), 6),
            # The same in decades (score = 1 - 10**-rarity): the score itself rounds to 1.0
            # above about six decades, where critical alerts live.
            "rarity": round(rarity, 4),
            "threshold_rarity": round(threshold_rarity, 4),
            "direction": direction,
            "features": top,
            "config_version": self.cfg.config_version,
        }
        if rules.rules and leading:
            rule = rule_for(rules, leading[0].metric)
            if rule is not None:
                detail["rule"] = rule.metrics
        return detail

    def screened(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Episode records after the trained alert filter (when one is configured)."""
        if not records or not self.cfg.filter.enabled:
            return records
        return self.episodes.screen(records, self._drops)

    def _drops(self, rec: dict[str, Any]) -> bool:
        return drops(self.cfg.filter, rec)

    def close(self, at: int, resolution: str) -> list[dict[str, Any]]:
        """Resolve the open episode, if any (``idle``: the entity stopped reporting)."""
        return self.screened(self.episodes.close(at, resolution))

    def apply(self, verdict: Verdict, ts: int) -> None:
        """An operator's verdict takes effect at ``ts``."""
        self.feedback.apply(verdict, ts)

    def reset_threshold(self) -> None:
        """Start the threshold afresh (the models were reset); episodes and feedback stay."""
        self.threshold = _threshold(self.cfg)

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold.snapshot(),
            "episodes": self.episodes.snapshot(),
            "feedback": self.feedback.snapshot(),
        }

    @classmethod
    def restore(cls, entity: str, cfg: DetectorConfig, data: dict[str, Any]) -> Decider:
        decider = cls(entity, cfg)
        decider.threshold.restore(data["threshold"])
        decider.episodes.restore(data["episodes"])
        decider.feedback.restore(data["feedback"])
        return decider


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.decision":
    from udfs.core.native import bind

    bind(globals(), __file__, "decision")
