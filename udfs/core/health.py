"""The health stage of an entity's detector: is the entity still reporting, and is its
detector still seeing?

:class:`Health` owns two watches, each with its own state:

- **staleness** (:mod:`udfs.core.staleness`): the entity's cadence (the median of its last
  gaps) and whether its current silence was reported. ``stale_entity`` when the silence
  passes its threshold (by the watermark, or by the next event when no watermark came
  first: both give the same record), ``entity_returned`` when it reports again;
- **drift** (:mod:`udfs.core.drift`): the entity's metrics and its score against a frozen
  reference, and the ``silent_detector`` / ``stale_model`` checks. A drift with
  ``action: reset`` asks the detector to start its models afresh (the caller does).

Records leave on the drift output (``type: drift | health | config``), each with the
entity, its time and the configuration version that decided it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from udfs.core.config import DetectorConfig
from udfs.core.drift import SCORE, DriftMonitor
from udfs.core.events import format_timestamp
from udfs.core.maintenance import in_maintenance
from udfs.core.staleness import InterArrival, silence_threshold_ms

__all__ = ["Health"]

Output = tuple[str, dict[str, Any]]


class Health:
    """Staleness and drift of one entity (see the module docstring)."""

    __slots__ = ("entity", "cfg", "gaps", "stale_sent", "drift", "drift_epoch")

    def __init__(self, entity: str, cfg: DetectorConfig) -> None:
        self.entity = entity
        self.cfg = cfg
        self.gaps = InterArrival(cfg.staleness.gap_samples)
        self.stale_sent = False
        self.drift: DriftMonitor | None = None
        self.drift_epoch = cfg.drift.reset_epoch  # a new entity starts with a new reference

    # -- staleness -----------------------------------------------------------------------

    def silence_threshold_ms(self) -> int | None:
        """The silence that makes this entity stale; None before its first gap or disabled."""
        interval = self.gaps.get()
        if interval is None or not self.cfg.staleness.enabled:
            return None
        return silence_threshold_ms(self.cfg.staleness, interval, self.cfg.lateness.idle_ttl_ms)

    def stale_deadline_ms(self, last_ts: int | None) -> int | None:
        """When the entity becomes stale if no event arrives after ``last_ts`` (its newest
        scored event); None when it cannot (no gap yet, disabled, already reported)."""
        if self.stale_sent or last_ts is None:
            return None
        silence = self.silence_threshold_ms()
        return None if silence is None else last_ts + silence

    def check_stale(self, last_ts: int | None, watermark_ms: int) -> list[Output]:
        """``stale_entity`` when the watermark has passed the stale deadline."""
        deadline = self.stale_deadline_ms(last_ts)
        if deadline is None or deadline > watermark_ms:
            return []
        assert last_ts is not None
        return [("drift", self._stale_record(last_ts, deadline))]

    def resumed(self, last_ts: int, ts: int) -> list[Output]:
        """An event at ``ts`` after the newest at ``last_ts`` (within the idle TTL): its
        return if its silence was reported (``entity_returned``), and its new gap."""
        out: list[Output] = []
        if self.stale_sent:
            if self.cfg.staleness.enabled:
                threshold = self.silence_threshold_ms()
                out.append(
                    ("drift", self._record(last_ts, ts, "entity_returned", ts - last_ts, threshold))
                )
            self.stale_sent = False
        self.gaps.update(ts - last_ts)
        return out

    def _stale_record(self, last_ts: int, deadline: int) -> dict[str, Any]:
        self.stale_sent = True
        silence = deadline - last_ts
        return self._record(last_ts, deadline, "stale_entity", silence, silence)

    def _record(
        self, last: int, ts: int, check: str, silence: int, threshold: int | None
    ) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "type": "health",
            "check": check,
            "value": silence,
            "threshold": threshold,
            "silence_ms": silence,
            "expected_interval_ms": self.gaps.get(),
            "last_seen_ts": format_timestamp(last),
            "last_seen_ts_ms": last,
            "current": {"from_ts": last, "to_ts": ts, "events": 0},
            "entity": self.entity,
            "ts": format_timestamp(ts),
            "ts_ms": ts,
            "config_version": self.cfg.config_version,
        }
        if in_maintenance(self.cfg.maintenance, self.entity, ts):
            rec["maintenance"] = True  # as on alerts: a planned silence, most likely
        return rec

    # -- drift ---------------------------------------------------------------------------

    def start_drift(self, metrics: list[str]) -> None:
        """On the entity's first event: watch its metrics and its score."""
        if self.drift is None and self.cfg.drift.enabled:
            self.drift = DriftMonitor(self.cfg.drift, _watched(self.cfg, metrics))

    def on_scored(
        self, ts: int, metrics: dict[str, float], score: float, anomalous: bool
    ) -> tuple[list[Output], bool]:
        """Feed the drift monitor one ready event; ``(records, reset)``: ``reset`` asks the
        caller to start the entity's models afresh (a drift with ``action: reset``)."""
        drift = self.drift
        if drift is None:
            return [], False
        out: list[Output] = []
        dc = self.cfg.drift
        if dc.reset_epoch > self.drift_epoch:  # the operator's command (a live change)
            self.drift_epoch = dc.reset_epoch
            if fnmatchcase(self.entity, dc.reset_entities):
                drift.reset_reference()
                out.append(("drift", self._stamped(ts, {
                    "type": "config",
                    "check": "drift_reference_reset",
                    "reset_epoch": dc.reset_epoch,
                })))
        inputs = dict(metrics)
        inputs[SCORE] = score
        reset = False
        for rec in drift.update(ts, inputs, anomalous):
            out.append(("drift", self._stamped(ts, rec)))
            reset |= rec.get("type") == "drift" and rec.get("action") == "reset"
        return out, reset

    def _stamped(self, ts: int, rec: dict[str, Any]) -> dict[str, Any]:
        rec.update(
            entity=self.entity,
            ts=format_timestamp(ts),
            ts_ms=ts,
            config_version=self.cfg.config_version,
        )
        return rec

    def forget(self) -> None:
        """The entity idled out and starts fresh: no cadence, no reported silence, no drift
        reference (a new one from its next event; the reset epoch applied stays)."""
        self.gaps = InterArrival(self.cfg.staleness.gap_samples)
        self.stale_sent = False
        self.drift = None

    # -- state ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "gaps": self.gaps.snapshot(),
            "stale_sent": self.stale_sent,
            "drift": None if self.drift is None else self.drift.snapshot(),
            "drift_epoch": self.drift_epoch,
        }

    @classmethod
    def restore(
        cls, entity: str, cfg: DetectorConfig, data: dict[str, Any], metrics: list[str]
    ) -> Health:
        health = cls(entity, cfg)
        health.gaps = InterArrival.restore(cfg.staleness.gap_samples, data["gaps"])
        health.stale_sent = bool(data["stale_sent"])
        health.drift_epoch = int(data["drift_epoch"])
        drift = data["drift"]
        if drift is not None and cfg.drift.enabled:
            monitor: DriftMonitor | None
            try:
                monitor = DriftMonitor.restore(cfg.drift, drift)
            except ValueError:
                monitor = None
            if monitor is None or (monitor.watched != [SCORE]) != cfg.drift.watch_metrics:
                # The drift layout changed with the configuration: start a new reference.
                monitor = DriftMonitor(cfg.drift, _watched(cfg, metrics))
            health.drift = monitor
        return health


def _watched(cfg: DetectorConfig, metrics: list[str]) -> list[str]:
    """The series the drift monitor watches: the score, and the metrics if configured."""
    if not cfg.drift.watch_metrics:
        return [SCORE]
    return [*(m for m in metrics if m != SCORE), SCORE]


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.health":
    from udfs.core.native import bind

    bind(globals(), __file__, "health")
