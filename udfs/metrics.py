"""Flink metrics of the detector (group ``anomaly``), visible in the web UI and REST API.

Counters: ``events`` (scored), ``late``, ``dead_letters`` (in the parse operator, also per
reason as ``dead_letters_<reason>``), ``alerts_info`` / ``alerts_warning`` /
``alerts_critical`` (episodes opened), ``alert_records`` (open, escalate, resolved),
``suppressed_alerts`` (held back by cooldown or rate limit, counted when the next alert
carries them), ``drift_events``, ``health_records``, ``entities_expired``.
Gauges: ``active_entities`` (entities this operator instance created minus those it
cleared since it started; after a restore it counts from zero), ``state_bytes_avg`` (mean
encoded state of the entities it wrote, exponentially weighted).
Distributions: ``score_rarity_milli`` (rarity of each scored event in thousandths of a
decade) and ``lag_ms`` (wall clock minus event time when the event is scored: the
processing lag, including the order buffer's wait).
"""

from __future__ import annotations

import time
from typing import Any

from udfs.core.alerts import SEVERITIES

__all__ = ["DetectorMetrics"]


class DetectorMetrics:
    def __init__(self, group: Any) -> None:
        g = group.add_group("anomaly")
        self.events = g.counter("events")
        self.late = g.counter("late")
        self.alert_records = g.counter("alert_records")
        self.opened = {s: g.counter(f"alerts_{s}") for s in SEVERITIES}
        self.suppressed = g.counter("suppressed_alerts")
        self.drift = g.counter("drift_events")
        self.health = g.counter("health_records")
        self.expired = g.counter("entities_expired")
        self.rarity = g.distribution("score_rarity_milli")
        self.lag = g.distribution("lag_ms")
        self.active = 0
        self.state_bytes = 0.0
        g.gauge("active_entities", lambda: self.active)
        g.gauge("state_bytes_avg", lambda: int(self.state_bytes))

    def record(self, kind: str, rec: dict[str, Any]) -> None:
        if kind == "score":
            self.events.inc()
            score = rec["anomaly_score"]
            rarity = 0.0 if score <= 0.0 else -_log10(max(1.0 - score, 1e-12))
            self.rarity.update(int(rarity * 1000))
            self.lag.update(max(0, int(time.time() * 1000) - rec["ts_ms"]))
        elif kind == "alert":
            self.alert_records.inc()
            if rec["kind"] == "open":
                self.opened[rec["severity"]].inc()
                if rec.get("suppressed_before"):
                    self.suppressed.inc(rec["suppressed_before"])
        elif kind == "late":
            self.late.inc()
        elif kind == "drift":
            (self.health if rec.get("type") == "health" else self.drift).inc()

    def stored(self, size: int, new_entity: bool) -> None:
        if new_entity:
            self.active += 1
        self.state_bytes += 0.01 * (size - self.state_bytes) if self.state_bytes else size

    def cleared(self) -> None:
        self.active -= 1
        self.expired.inc()


def _log10(x: float) -> float:
    import math

    return math.log10(x)
