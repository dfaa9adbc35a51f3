"""Flink adapter: event time from the parsed event tuple."""

from __future__ import annotations

from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner

__all__ = ["EventTimestamps", "event_watermark_strategy", "watermark_strategy"]


class EventTimestamps(TimestampAssigner):  # type: ignore[misc]
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1])


def watermark_strategy(max_out_of_orderness_ms: int) -> WatermarkStrategy:
    """Bounded out-of-orderness, no timestamp assigner: the job's parser emits each record's
    timestamp itself (job/pipeline.py ``with_event_time``)."""
    return WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(max_out_of_orderness_ms))


def event_watermark_strategy(max_out_of_orderness_ms: int) -> WatermarkStrategy:
    """Bounded out-of-orderness, event time from field 1 of an ``EVENT_TYPE`` tuple."""
    return watermark_strategy(max_out_of_orderness_ms).with_timestamp_assigner(EventTimestamps())


_LATEST = (1 << 63) - 2


class ControlTimestamps(TimestampAssigner):  # type: ignore[misc]
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return _LATEST


def control_watermark_strategy(idle_ms: int = 1000) -> WatermarkStrategy:
    """The broadcast control input must never hold the detector's watermark back (a
    two-input operator's watermark is the smaller of its inputs'): its records are stamped at
    the end of time, so after the first one its watermark is past every event, and before the
    first one (or with none at all) the input is marked idle after ``idle_ms``."""
    return (
        WatermarkStrategy.for_monotonous_timestamps()
        .with_timestamp_assigner(ControlTimestamps())
        .with_idleness(Duration.of_millis(idle_ms))
    )
