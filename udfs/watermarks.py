"""Flink adapter: event time from the parsed event tuple."""

from __future__ import annotations

from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner

__all__ = ["EventTimestamps", "watermark_strategy"]


class EventTimestamps(TimestampAssigner):  # type: ignore[misc]
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1])


def watermark_strategy(max_out_of_orderness_ms: int) -> WatermarkStrategy:
    return WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(max_out_of_orderness_ms)
    ).with_timestamp_assigner(EventTimestamps())
