"""The per-entity detector: a small coordinator over four stages.

:class:`EntityDetector` is the whole detection logic of one entity behind a tiny interface:

- ``on_event(event) -> outputs``: order the event, score every event that is now safe to
  process in timestamp order;
- ``on_verdict(verdict) -> outputs``: an operator's verdict on one of its alerts;
- ``on_watermark(wm_ms) -> outputs``: the stream promises no event at or before ``wm_ms``
  (Flink's watermark): release what it allows, report a silence it reveals;
- ``flush() -> outputs``: end of input, release everything;
- ``snapshot() -> dict`` / ``EntityDetector.restore(entity, cfg, data)``.

Outputs are ``(kind, record)`` pairs with kind ``score`` (one per scored event), ``alert``
(episode records, :mod:`udfs.core.alerts`), ``late``, ``dead_letter`` (an event far ahead of
its clock that the entity did not follow, a verdict that cannot be placed) or ``drift``
(drift, health and config records).

The stages, each its own module with its own state:

1. **ordering** (:mod:`udfs.core.ordering`): event-time order per entity, lateness, held
   clocks, verdicts waiting for their time;
2. **scoring** (:mod:`udfs.core.scoring`): window features, the models, their calibrated
   and combined rarity;
3. **decision** (:mod:`udfs.core.decision`): threshold, hysteresis, feedback, maintenance,
   rules, severity, explanation, episodes;
4. **health** (:mod:`udfs.core.health`): staleness and drift.

This coordinator owns only what ties them: the entity's newest scored timestamp, the idle
reset (an entity silent for longer than ``idle_ttl_ms`` starts fresh, as the Flink job clears
its state), the maintenance calendar, and the score record.

Event order and lateness are decided **per entity**, never by the arrival interleaving of
different entities, so the same input gives the same outputs on one core or many; the only
way the watermark can change a result is an event that is behind the stream's global
watermark. Staleness is decided from event time only: ``stale_deadline_ms()`` is when the
entity becomes stale if nothing arrives; ``on_watermark`` reports it once the watermark has
passed it, and an event that arrives later than the deadline reports it first if no
watermark did (the replay has no watermarks): both give the same record.
"""

from __future__ import annotations

import json
from typing import Any

from udfs.core.calibration import rarity_to_score
from udfs.core.config import DetectorConfig
from udfs.core.decision import Decider
from udfs.core.events import DeadLetter, Event
from udfs.core.feedback import Verdict
from udfs.core.health import Health
from udfs.core.maintenance import in_maintenance
from udfs.core.ordering import NEG_INF, EventOrder, PendingVerdict
from udfs.core.scoring import Scorer

__all__ = ["STATE_VERSION", "UNPLACEABLE_VERDICT", "EntityDetector", "Output"]

UNPLACEABLE_VERDICT = "unplaceable_verdict"
#: The layout of :meth:`EntityDetector.snapshot` (upgrades of older ones: ``state/upgrade.py``).
STATE_VERSION = 6

Output = tuple[str, dict[str, Any]]


class EntityDetector:
    """All detection state and logic of one entity. See the module docstring.

    Examples
    --------
    >>> from udfs.core.config import DetectorConfig
    >>> det = EntityDetector("srv-1", DetectorConfig())
    >>> out = det.on_event(Event("srv-1", 1_767_225_600_000, {"cpu": 50.0}))
    >>> out  # waits: it may still be overtaken by an older event within 5 s
    []
    >>> [kind for kind, _ in det.flush()]
    ['score']
    """

    __slots__ = (
        "entity",
        "cfg",
        "order",
        "scorer",
        "decider",
        "health",
        "last_ts",
        "with_features",
        "processing",
    )

    def __init__(
        self,
        entity: str,
        cfg: DetectorConfig,
        with_features: bool = True,
        stages: tuple[EventOrder, Scorer, Decider, Health] | None = None,
    ) -> None:
        self.entity = entity
        self.cfg = cfg
        # Whether score records carry every feature (``features``); else only what the
        # models read (the same values, less work: the Flink operator asks for them only
        # when it emits them, ``sink.emit_features``).
        self.with_features = with_features
        if stages is None:
            self.order = EventOrder(cfg.lateness)
            self.scorer = Scorer(entity, cfg, with_features)
            self.decider = Decider(entity, cfg)
            self.health = Health(entity, cfg)
        else:  # (restored ones, :meth:`restore`: fresh ones would be built for nothing)
            self.order, self.scorer, self.decider, self.health = stages
        self.last_ts: int | None = None  # the newest scored event
        # The event being scored, while it is (None otherwise): when scoring raises, the
        # event to blame (udfs/core/guard.py), which may be one the buffer held.
        self.processing: Event | None = None

    # -- inputs ---------------------------------------------------------------------------

    def on_event(self, ev: Event) -> list[Output]:
        out, due = self.order.offer(ev)
        return self._run(out, due)

    def on_verdict(self, verdict: Verdict) -> list[Output]:
        """An operator's verdict on one of this entity's alerts (:mod:`udfs.core.feedback`).

        A verdict with a ``ts`` takes effect at that point of the entity's event time (it
        waits like an event, :meth:`udfs.core.ordering.EventOrder.offer_verdict`), so the
        result does not depend on how verdicts and events interleave on arrival. A verdict
        without ``ts`` for an entity that has had no event cannot be placed in time: it
        leaves as a dead letter (``unplaceable_verdict``).
        """
        if verdict.ts_ms is None and self.order.max_seen == NEG_INF:
            return [("dead_letter", _unplaceable(verdict))]
        now, due = self.order.offer_verdict(verdict)
        if now is not None:
            self.decider.apply(verdict, now)
        return self._run([], due)

    def on_watermark(self, watermark_ms: int) -> list[Output]:
        out, due = self.order.on_watermark(watermark_ms)
        out = self._run(out, due)
        out += self.health.check_stale(self.last_ts, watermark_ms)
        return out

    def flush(self) -> list[Output]:
        """End of input: release everything, report staleness and expire as the timers would."""
        out, due = self.order.drain()
        out = self._run(out, due)
        out += self.health.check_stale(self.last_ts, 1 << 62)
        return out + self.expire()

    def expire(self) -> list[Output]:
        """The entity idled out (its TTL timer fired): close an open episode.

        The ``resolved`` record is dated at the idle deadline (newest timestamp plus
        ``idle_ttl_ms``) and says ``"resolution": "idle"``, so an episode never ends
        without a record even when the entity stops reporting.
        """
        if self.order.max_seen == NEG_INF:
            return []
        at = self.order.max_seen + self.cfg.lateness.idle_ttl_ms
        return [("alert", rec) for rec in self.decider.close(at, "idle")]

    def discard_buffered(self, ev: Event) -> bool:
        """Take ``ev`` out of the order buffer, unscored (udfs/core/guard.py: it raised when
        released); False when the buffer does not hold it."""
        return self.order.discard(ev)

    # -- timers (the Flink adapter's) ------------------------------------------------------

    @property
    def max_seen_ms(self) -> int:
        """Newest timestamp seen (scored or buffered)."""
        return self.order.max_seen

    def earliest_buffered_ms(self) -> int | None:
        """When the release timer should fire: the oldest input waiting (see
        :meth:`udfs.core.ordering.EventOrder.earliest_pending_ms`)."""
        return self.order.earliest_pending_ms()

    def idle_deadline_ms(self) -> int:
        """When the entity's state may be dropped if nothing else arrives: the newest event
        (or, for an entity that has only had verdicts, the newest verdict) plus the TTL."""
        newest = self.order.newest_ms()
        if newest == NEG_INF:
            newest = 0
        return newest + self.cfg.lateness.idle_ttl_ms

    def silence_threshold_ms(self) -> int | None:
        """The silence that makes this entity stale; None before its first gap or disabled."""
        return self.health.silence_threshold_ms()

    def stale_deadline_ms(self) -> int | None:
        """When the entity becomes stale if no event arrives (for the adapter's timer)."""
        return self.health.stale_deadline_ms(self.last_ts)

    # -- processing -----------------------------------------------------------------------

    def _run(self, out: list[Output], due: list[Event | PendingVerdict]) -> list[Output]:
        for item in due:
            if isinstance(item, Event):
                self.processing = item
                self._process(item, out)
                self.processing = None
            else:
                ts, alert_id, kind, reason = item
                self.decider.apply(Verdict(alert_id, self.entity, kind, reason, ts), ts)
        return out

    def _process(self, ev: Event, out: list[Output]) -> None:
        cfg = self.cfg
        ts = ev.ts_ms
        last = self.last_ts
        if last is not None:
            # A silence no watermark has reported (always so in a replay): report it now.
            out += self.health.check_stale(last, ts - 1)
            if ts - last > cfg.lateness.idle_ttl_ms:
                # Idle past its TTL: the Flink job cleared the entity; it starts fresh.
                closed = self.decider.close(last + cfg.lateness.idle_ttl_ms, "idle")
                out.extend(("alert", rec) for rec in closed)
                self._start_fresh()
            else:
                out += self.health.resumed(last, ts)
        self.last_ts = ts
        maintenance = in_maintenance(cfg.maintenance, self.entity, ts)
        learn = not maintenance or cfg.maintenance.learn
        scorer = self.scorer
        scored = scorer.score(ev, learn)
        if self.health.drift is None:
            self.health.start_drift(list(scorer.metrics))
        decider = self.decider
        decision = decider.decide(ts, scored.u, scored.ready, maintenance)
        if learn:
            scorer.learn(scored, decision.unusual, decision.threshold)
            if scored.ready:
                decider.learn(scored.u, decision)
        contributions = scorer.explain(scored) if decision.anomalous else []
        records, anomalous = decider.alerts(ts, scored.u, decision, contributions, maintenance)
        if records and cfg.model.custom:
            # With models the user brought, an alert says which models (and which artifact
            # versions) saw the event as how rare.
            rarities = scorer.rarity_record(scored)
            for rec in records:
                if rec.get("kind") in ("open", "escalate"):
                    rec["models"] = rarities
        out.extend(("alert", rec) for rec in records)
        score = rarity_to_score(scored.score)
        if scored.ready and self.health.drift is not None:
            # Drift watches the calibrated, unsmoothed score (about uniform while the models
            # fit): the smoothing would make every short excursion a lasting shift.
            drift, reset = self.health.on_scored(
                ts, ev.metrics, rarity_to_score(scored.u), anomalous
            )
            out += drift
            if reset:
                # The operator asked drift to reset the entity: new models and threshold,
                # keeping the open episode, the feedback and the drift monitor.
                self.scorer = Scorer(self.entity, cfg, self.with_features)
                decider.reset_threshold()
        score_rec: dict[str, Any] = {
            "entity": self.entity,
            "ts_ms": ts,
            "anomaly_score": score,
            "threshold": rarity_to_score(decision.alert_threshold),
            "is_alert": 1 if anomalous else 0,
            "ready": 1 if scored.ready else 0,
            "raw": scorer.raw_record(scored),
            "features": scored.ctx.values,
        }
        if decision.held_back:
            score_rec["suppressed"] = "maintenance"
        out.append(("score", score_rec))

    def _start_fresh(self) -> None:
        """After an idle gap: new models, threshold, episodes, feedback, cadence and drift
        reference (the order and the drift reset epoch applied stay)."""
        self.scorer = Scorer(self.entity, self.cfg, self.with_features)
        self.decider = Decider(self.entity, self.cfg)
        self.health.forget()

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The entity's complete state as named plain data (version :data:`STATE_VERSION`;
        encoded by :mod:`state.codec`)."""
        return {
            "version": STATE_VERSION,
            "last_ts": self.last_ts,
            "order": self.order.snapshot(),
            "scoring": self.scorer.snapshot(),
            "decision": self.decider.snapshot(),
            "health": self.health.snapshot(),
        }

    @classmethod
    def restore(
        cls, entity: str, cfg: DetectorConfig, data: dict[str, Any], with_features: bool = True
    ) -> EntityDetector:
        """The detector :meth:`snapshot` describes, going on under ``cfg``. Raises
        ``ValueError`` for another layout (older ones: ``state.upgrade.upgrade`` first)."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            got = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"entity {entity!r}: state layout {got!r} is not {STATE_VERSION}")
        scorer = Scorer.restore(entity, cfg, data["scoring"], with_features)
        stages = (
            EventOrder.restore(cfg.lateness, entity, data["order"]),
            scorer,
            Decider.restore(entity, cfg, data["decision"]),
            Health.restore(entity, cfg, data["health"], list(scorer.metrics)),
        )
        det = cls(entity, cfg, with_features, stages)
        det.last_ts = data["last_ts"]
        return det


def _unplaceable(v: Verdict) -> dict[str, Any]:
    raw = {"alert_id": v.alert_id, "entity": v.entity, "verdict": v.verdict, "reason": v.reason}
    return DeadLetter(
        UNPLACEABLE_VERDICT,
        "ts",
        json.dumps(raw, sort_keys=True),
        "a verdict without ts for an entity with no events yet cannot be placed in event time",
    ).to_dict()


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.detector":
    from udfs.core.native import bind

    bind(globals(), __file__, "detector")
