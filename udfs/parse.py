"""Flink adapter: raw JSON lines to parsed events, bad input to the dead-letter output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyflink.datastream import ProcessFunction

from udfs.core.events import DeadLetter, ParseConfig, parse_line
from udfs.tags import DEAD_LETTER_TAG

__all__ = ["ParseEvents"]


class ParseEvents(ProcessFunction):  # type: ignore[misc]
    """``str -> (entity, ts_ms, event_json)``; dead letters leave through a side output."""

    def __init__(self, cfg: ParseConfig) -> None:
        self._cfg = cfg
        self._group: Any = None
        self._dead: Any = None
        self._by_reason: dict[str, Any] = {}

    def open(self, runtime_context: Any) -> None:
        self._group = runtime_context.get_metrics_group().add_group("anomaly")
        self._dead = self._group.counter("dead_letters")

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        rec = parse_line(value, self._cfg)
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
            yield rec.entity, rec.ts_ms, rec.to_json()
