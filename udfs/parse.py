"""Flink adapter: raw JSON lines to parsed events (and operator verdicts), bad input to the
dead-letter output; and the forms a parsed record takes between operators and in state.

The job itself parses in its detect operator (udfs/detect.py), keyed by Flink SQL in Java
(job/pipeline.py ``front``). :class:`ParseEvents` is the parser as its own operator (the
benchmark's naive job): a record leaves as ``(entity, flink_ts, payload)``
(``udfs.tags.EVENT_TYPE``), the payload the pickled bytes of a Python object
(:func:`handoff`): an event's ``(ts_ms, metrics, id)`` tuple, or a verdict's dict. The detect
operator journals events and verdicts in that form (udfs/detect.py).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

from pyflink.datastream import ProcessFunction

from state.codec import decode_value
from udfs.core.events import DeadLetter, Event, ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict
from udfs.metrics import DeadLetterCounters
from udfs.tags import DEAD_LETTER_TAG

__all__ = [
    "ParseEvents", "dead_letter_json", "detect_input", "handoff", "payload_event", "verdict_payload",
]

_dumps = pickle.dumps
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def dead_letter_json(rec: DeadLetter) -> str:
    """A dead letter as it leaves the job."""
    return json.dumps(rec.to_dict(), sort_keys=True)


class ParseEvents(ProcessFunction):  # type: ignore[misc]
    """``str -> (entity, flink_ts, payload)`` (:func:`handoff`); dead letters leave through a
    side output.

    A verdict gets Flink timestamp 0 (its dict carries its own ``ts_ms``): keyed by entity
    like the events, it reaches the entity's detector
    (udfs.core.detector.EntityDetector.on_verdict), which waits for the entity to reach that
    ts. Its Flink timestamp is 0 so that a verdict never moves the watermark: event time is
    the events' (a verdict dated ahead of the events would otherwise make them all late).
    """

    def __init__(self, cfg: ParseConfig) -> None:
        self._cfg = cfg
        self._dead: DeadLetterCounters | None = None

    def open(self, runtime_context: Any) -> None:
        self._dead = DeadLetterCounters(runtime_context.get_metrics_group().add_group("anomaly"))

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        rec = parse_event_or_verdict(value, self._cfg)
        if isinstance(rec, DeadLetter):
            if self._dead is not None:
                self._dead.count(rec.reason)
            yield DEAD_LETTER_TAG, dead_letter_json(rec)
        else:
            yield handoff(rec)


def handoff(rec: Event | Verdict) -> tuple[str, int, bytes]:
    """``(entity, flink_ts, payload)``: what the parser hands the detect operator for ``rec``
    (``udfs.detect._feed`` reads it back; the payload is journaled as it came)."""
    if isinstance(rec, Verdict):
        return (rec.entity, 0, _dumps(verdict_payload(rec), _PROTOCOL))
    return (rec.entity, rec.ts_ms, _dumps((rec.ts_ms, rec.metrics, rec.id), _PROTOCOL))


def detect_input(rec: Event | Verdict) -> tuple[str, str]:
    """``(entity, line)``: what the front gives the detect operator for ``rec``, with its
    canonical line (the operator tests)."""
    if isinstance(rec, Event):
        return rec.entity, rec.to_json()
    obj: dict[str, Any] = {
        "alert_id": rec.alert_id, "entity": rec.entity, "verdict": rec.verdict, "reason": rec.reason,
    }
    if rec.ts_ms is not None:
        obj["ts"] = rec.ts_ms
    return rec.entity, json.dumps(obj, sort_keys=True)


def verdict_payload(v: Verdict) -> dict[str, Any]:
    """The verdict as the detect operator reads it: a dict with a ``verdict`` key."""
    return {"alert_id": v.alert_id, "verdict": v.verdict, "reason": v.reason, "ts_ms": v.ts_ms}


def payload_event(entity: str, payload: bytes) -> Event:
    """The event an event payload (:func:`handoff`) carries."""
    ts_ms, metrics, eid = decode_value(payload)
    return Event(entity, ts_ms, metrics, eid)
