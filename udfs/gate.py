"""Flink adapter: the global alert rate limit (:class:`udfs.core.ratelimit.GlobalAlertGate`).

All alert records of the job meet in one operator instance (keyed by a constant). The gate
must judge them in event-time order, whatever the interleaving of the detect instances:
each record waits in keyed state until the watermark passes its ``ts_ms`` (an event-time
timer), then the due records are judged sorted by :func:`udfs.core.ratelimit.alert_order`.
Every ``open``/``escalate`` record reaches this operator before the watermark passes its
timestamp (the detector emits it when the event is released, at the latest by the release
timer at that timestamp), so the batches concatenate to one sorted sequence and the result
equals :func:`udfs.core.ratelimit.gate_alerts` over the whole run. A record already behind
the watermark (a ``resolved`` dated at an idle deadline) is judged at once.

State: one ValueState ``(gate snapshot, waiting records)``; the waiting records live at
most one watermark interval.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.core.ratelimit import GlobalAlertGate, alert_order
from udfs.tags import DRIFT_TAG

__all__ = ["GateAlerts"]


class GateAlerts(KeyedProcessFunction):  # type: ignore[misc]
    """Alert JSON in, alert JSON out (fewer, with counts); ``alert_storm`` to DRIFT_TAG."""

    def __init__(self, max_per_hour: int) -> None:
        self._max = max_per_hour
        self._state: Any = None
        self._suppressed: Any = None
        self._storms: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state = runtime_context.get_state(
            ValueStateDescriptor("alert-gate", Types.PICKLED_BYTE_ARRAY())
        )
        g = runtime_context.get_metrics_group().add_group("anomaly")
        self._suppressed = g.counter("suppressed_global")
        self._storms = g.counter("alert_storms")

    def _load(self) -> tuple[GlobalAlertGate, list[str]]:
        gate = GlobalAlertGate(self._max)
        stored = self._state.value()
        if stored is None:
            return gate, []
        snap, waiting = stored
        gate.restore(snap)
        return gate, list(waiting)

    def process_element(self, value: str, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        gate, waiting = self._load()
        rec = json.loads(value)
        service = ctx.timer_service()
        if rec["ts_ms"] <= service.current_watermark():
            out = self._judge(gate, [rec])
        else:
            waiting.append(value)
            service.register_event_time_timer(rec["ts_ms"])
            out = []
        self._state.update((gate.snapshot(), waiting))
        yield from out

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        gate, waiting = self._load()
        due: list[tuple[dict[str, Any], str]] = []
        rest: list[tuple[dict[str, Any], str]] = []
        for raw in waiting:
            rec = json.loads(raw)
            (due if rec["ts_ms"] <= timestamp else rest).append((rec, raw))
        out = self._judge(gate, sorted((r for r, _ in due), key=alert_order))
        self._state.update((gate.snapshot(), [raw for _, raw in rest]))
        yield from out

    def _judge(self, gate: GlobalAlertGate, records: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for rec in records:
            before = gate.suppressed
            for kind, r in gate.decide(rec):
                if kind == "alert":
                    out.append(json.dumps(r, sort_keys=True))
                else:
                    self._storms.inc()
                    out.append((DRIFT_TAG, json.dumps(r, sort_keys=True)))
            if gate.suppressed > before:
                self._suppressed.inc(gate.suppressed - before)
        return out
