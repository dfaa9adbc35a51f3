"""Flink adapter: event time from the parsed event tuple."""

from __future__ import annotations

from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner

__all__ = ["EventTimestamps", "KeyedEventTimestamps", "watermark_strategy"]


class EventTimestamps(TimestampAssigner):  # type: ignore[misc]
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1])


class KeyedEventTimestamps(TimestampAssigner):  # type: ignore[misc]
    """Event time of ``Row(entity, (entity, ts_ms, json))`` (udfs.parse, keyed=True)."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1][1])


def watermark_strategy(max_out_of_orderness_ms: int, keyed: bool = False) -> WatermarkStrategy:
    return WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(max_out_of_orderness_ms)
    ).with_timestamp_assigner(KeyedEventTimestamps() if keyed else EventTimestamps())


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
