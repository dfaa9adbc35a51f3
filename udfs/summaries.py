"""Flink adapter: per-entity window summaries on Flink's own sliding event-time windows.

Summaries are for dashboards. They use Flink's watermark, so an event behind it is not in
its windows: it leaves through the late output with ``"stage": "summaries"`` (it was still
scored by the detector, whose lateness is decided per entity).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pyflink.datastream.functions import AggregateFunction, FlatMapFunction, ProcessWindowFunction

from udfs.core.events import Event, ParseConfig, format_timestamp
from udfs.core.feedback import parse_event_or_verdict
from udfs.core.summaries import SummaryAccumulator
from udfs.parse import handoff, payload_event

__all__ = ["SummaryAggregate", "SummaryEvents", "SummaryWindow", "summary_late_record"]


class SummaryEvents(FlatMapFunction):  # type: ignore[misc]
    """``Row(entity, (entity, line))`` (job/pipeline.py ``front``) to the events among
    them as ``(entity, ts_ms, payload)`` (``udfs.parse.handoff``). Verdicts and bad lines
    are left out: the detect operator handles them (a bad line is its dead letter)."""

    def __init__(self, cfg: ParseConfig) -> None:
        self._cfg = cfg

    def flat_map(self, value: Any) -> Iterator[Any]:
        entity, line = value[1]
        rec = parse_event_or_verdict(line, self._cfg)
        if isinstance(rec, Event) and rec.entity == entity:
            yield handoff(rec)


def summary_late_record(value: Any) -> str:
    """A late-output record for an event the summary windows could not take."""
    entity, ts_ms, payload = value
    return json.dumps(
        {
            "stage": "summaries",
            "entity": entity,
            "ts": format_timestamp(ts_ms),
            "ts_ms": ts_ms,
            "reason": "behind Flink's watermark: not in the window summaries (it was scored)",
            "event": payload_event(entity, payload).to_json(),
        },
        sort_keys=True,
    )


class SummaryAggregate(AggregateFunction):  # type: ignore[misc]
    def __init__(self, alpha: float) -> None:
        self._alpha = alpha

    def create_accumulator(self) -> SummaryAccumulator:
        return SummaryAccumulator(self._alpha)

    def add(self, value: Any, accumulator: SummaryAccumulator) -> SummaryAccumulator:
        accumulator.add(payload_event(value[0], value[2]).metrics)
        return accumulator

    def get_result(self, accumulator: SummaryAccumulator) -> dict[str, Any]:
        return accumulator.result()

    def merge(self, a: SummaryAccumulator, b: SummaryAccumulator) -> SummaryAccumulator:
        a.merge(b)
        return a


class SummaryWindow(ProcessWindowFunction):  # type: ignore[misc]
    def process(self, key: str, context: Any, elements: Iterable[dict[str, Any]]) -> Iterator[str]:
        w = context.window()
        for summary in elements:
            yield json.dumps(
                {
                    "entity": key,
                    "window_start": format_timestamp(w.start),
                    "window_end": format_timestamp(w.end),
                    "window_start_ms": w.start,
                    "window_end_ms": w.end,
                    "metrics": summary,
                },
                sort_keys=True,
            )
