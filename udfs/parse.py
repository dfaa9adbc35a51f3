"""Flink adapter: raw JSON lines to parsed events (and operator verdicts), bad input to the
dead-letter output.

The parsed record travels to the detect operator as ``(entity, flink_ts, payload)``
(``udfs.tags.EVENT_TYPE``), the payload the pickled bytes of a Python object
(:func:`handoff`): an event's ``(ts_ms, metrics, id)`` tuple, or a verdict's dict. It had
been the event's canonical JSON, encoded here and decoded again in the detector: the two took
7 % of the job's interpreter time (py-spy, 4 metrics), and pickling saves about 12.6 us per
event in the benchmark's plain operator loop. Most of that is in this task, which does not
limit the job: the job's rate did not change measurably (README, Performance). The detector
keeps the bytes as they came in its journal (udfs/detect.py), so the state written on every
event pickles a tuple of bytes rather than the objects again.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

from pyflink.common import Row
from pyflink.datastream import ProcessFunction

from udfs.core.events import DeadLetter, Event, ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict
from udfs.tags import DEAD_LETTER_TAG

__all__ = ["ParseEvents", "handoff", "payload_event", "verdict_payload"]

_dumps = pickle.dumps
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class ParseEvents(ProcessFunction):  # type: ignore[misc]
    """``str -> (entity, ts_ms, payload)`` (:func:`handoff`); dead letters leave through a
    side output.

    A verdict line becomes ``(entity, 0, verdict dict)``, where the dict has a ``verdict``
    key and its own ``ts_ms``: keyed by entity like
    the events, it reaches the entity's detector (udfs.core.detector.EntityDetector.on_verdict),
    which waits for the entity to reach that ts. Its Flink timestamp is 0 so that a verdict
    never moves the watermark: event time is the events' (a verdict dated ahead of the
    events would otherwise make them all late).

    With ``keyed=True`` each record leaves as ``(Row(entity, record), flink_ts)``
    (``TIMED_KEYED_EVENT_TYPE``), ready for Flink's Java timestamp assigner and key selector:
    PyFlink's ``assign_timestamps_and_watermarks`` with a Python timestamp assigner and its
    ``key_by`` would otherwise each run one more Python operator per event to compute those
    (job/pipeline.py ``with_event_time``, ``key_by_entity``).
    """

    def __init__(self, cfg: ParseConfig, keyed: bool = False) -> None:
        self._cfg = cfg
        self._keyed = keyed
        self._group: Any = None
        self._dead: Any = None
        self._by_reason: dict[str, Any] = {}

    def open(self, runtime_context: Any) -> None:
        self._group = runtime_context.get_metrics_group().add_group("anomaly")
        self._dead = self._group.counter("dead_letters")

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        rec = parse_event_or_verdict(value, self._cfg)
        if isinstance(rec, DeadLetter):
            self._dead.inc()
            counter = self._by_reason.get(rec.reason)
            if counter is None:
                counter = self._by_reason[rec.reason] = self._group.counter(
                    f"dead_letters_{rec.reason}"
                )
            counter.inc()
            yield DEAD_LETTER_TAG, json.dumps(rec.to_dict(), sort_keys=True)
        else:
            out = handoff(rec)
            yield (Row(rec.entity, out), out[1]) if self._keyed else out


def handoff(rec: Event | Verdict) -> tuple[str, int, bytes]:
    """``(entity, flink_ts, payload)``: what the parser hands the detect operator for ``rec``
    (``udfs.detect._feed`` reads it back; the payload is journaled as it came)."""
    if isinstance(rec, Verdict):
        return (rec.entity, 0, _dumps(verdict_payload(rec), _PROTOCOL))
    return (rec.entity, rec.ts_ms, _dumps((rec.ts_ms, rec.metrics, rec.id), _PROTOCOL))


def verdict_payload(v: Verdict) -> dict[str, Any]:
    """The verdict as the detect operator reads it: a dict with a ``verdict`` key."""
    return {"alert_id": v.alert_id, "verdict": v.verdict, "reason": v.reason, "ts_ms": v.ts_ms}


def payload_event(entity: str, payload: bytes) -> Event:
    """The event an event payload (:func:`handoff`) carries."""
    ts_ms, metrics, eid = pickle.loads(payload)
    return Event(entity, ts_ms, metrics, eid)
