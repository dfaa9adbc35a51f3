"""Flink metrics of the detector (group ``anomaly``), visible in the web UI and REST API.

Counters: ``events`` (scored; added once per operator call), ``late``, ``dead_letters`` (lines that are not events or
verdicts: the detect operator parses them; also per reason as ``dead_letters_<reason>``),
``alerts_info`` / ``alerts_warning`` /
``alerts_critical`` (episodes opened), ``alert_records`` (open, escalate, resolved),
``suppressed_alerts`` (held back by cooldown or rate limit, counted when the next alert
carries them), ``drift_events``, ``health_records`` (``silent_detector``, ``stale_model``,
``stale_entity``, ``entity_returned``), ``entities_expired``, ``verdicts``
(operator verdicts received by the detectors), ``filtered_alerts`` (held back by the trained
filter, counted when the entity's next record carries them).
``active_entities`` is a counter moved both ways: +1 when the instance creates an entity's
state, or first touches one restored from a checkpoint (an event or a timer), -1 when it
clears one. So it never goes negative; after a restore it counts restored entities as they
are touched (each has a timer, so all are by their next deadline at the latest).
``state_bytes_held`` is a counter moved the same way by bytes: the encoded size of the states
this instance holds (each write adds its size minus the entity's previous one, a clear
subtracts it); with ``active_entities`` it gives the bytes per entity.
No Python gauges: in thread mode Flink's metric thread would call into the embedded
interpreter to read them, and a TaskManager crashed doing so (SIGSEGV in take_gil); every
value here is pushed from the operator instead.
Distributions, sampled (each update is a call from Python into the JVM; three per event cost
about a tenth of the operator's time): ``score_rarity_milli`` (rarity of a scored event in
thousandths of a decade) and ``lag_ms`` (wall clock minus event time when the event is
scored: the processing lag, including the order buffer's wait), one scored event in
``SAMPLE_EVERY``; ``state_bytes`` (state written: snapshot, journal and stamp), one write in
``SAMPLE_WRITES_EVERY``, which is prime to the journal's length so the samples do not all
land on the same point of an entity's journal.
What a distribution shows depends on the execution mode: in thread mode PyFlink 2.3 backs it
with a Java gauge holding the *last* value updated
(``org.apache.flink.python.metric.embedded.MetricDistribution``: Java, so reading it is
safe), in process mode with Beam's distribution (count, sum, min, max).
"""

from __future__ import annotations

import time
from typing import Any

from udfs.core.alerts import SEVERITIES

__all__ = ["SAMPLE_EVERY", "SAMPLE_WRITES_EVERY", "DeadLetterCounters", "DetectorMetrics"]

SAMPLE_EVERY = 16
SAMPLE_WRITES_EVERY = 17


class DeadLetterCounters:
    """``dead_letters`` and ``dead_letters_<reason>`` (registered when first seen), in the
    ``anomaly`` group given (``DetectorMetrics.group`` in the detect operator)."""

    def __init__(self, group: Any) -> None:
        self._group = group
        self._all = self._group.counter("dead_letters")
        self._by_reason: dict[str, Any] = {}

    def count(self, reason: str) -> None:
        self._all.inc()
        counter = self._by_reason.get(reason)
        if counter is None:
            counter = self._by_reason[reason] = self._group.counter(f"dead_letters_{reason}")
        counter.inc()


class DetectorMetrics:
    def __init__(self, group: Any) -> None:
        self.group = g = group.add_group("anomaly")
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
        self.active = g.counter("active_entities")
        self.state_bytes = g.distribution("state_bytes")
        self.held = g.counter("state_bytes_held")
        self.verdicts = g.counter("verdicts")
        self.filtered = g.counter("filtered_alerts")
        self._scored = 0  # scores seen (one in SAMPLE_EVERY sampled) and writes seen (one in
        # SAMPLE_WRITES_EVERY)
        self._writes = 0
        self._events = 0  # scores not yet added to ``events`` (see flush)

    def flush(self) -> None:
        """Add the scores recorded since the last flush to ``events``: one call into the JVM
        per operator call (a group of lines) instead of one per event. The detect operator
        flushes at the end of each of its calls."""
        if self._events:
            self.events.inc(self._events)
            self._events = 0

    def verdict(self) -> None:
        self.verdicts.inc()

    def record(self, kind: str, rec: dict[str, Any]) -> None:
        if kind == "score":
            self._events += 1
            self._scored += 1
            if self._scored % SAMPLE_EVERY == 1:
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
            if rec.get("filtered_before"):
                self.filtered.inc(rec["filtered_before"])
        elif kind == "late":
            self.late.inc()
        elif kind == "drift":
            kind_of = rec.get("type")
            if kind_of == "drift":
                self.drift.inc()
            elif kind_of == "health":
                self.health.inc()
            # (type "config": an operator's command acknowledged, not a finding)

    def stored(self, size: int, previous: int, new_entity: bool) -> None:
        if new_entity:
            self.active.inc()
        if size > previous:
            self.held.inc(size - previous)
        elif size < previous:
            self.held.dec(previous - size)
        self._writes += 1
        if self._writes % SAMPLE_WRITES_EVERY == 1:
            self.state_bytes.update(size)

    def restored(self, size: int) -> None:
        self.active.inc()
        self.held.inc(size)

    def cleared(self, size: int) -> None:
        self.active.dec()
        self.held.dec(size)
        self.expired.inc()


def _log10(x: float) -> float:
    import math

    return math.log10(x)
