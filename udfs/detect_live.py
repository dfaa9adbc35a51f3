"""Flink adapter: the detector with live configuration changes through broadcast state.

``DetectAnomaliesLive`` is :class:`udfs.detect.DetectAnomalies` on a keyed stream connected
to a broadcast stream of control records (:mod:`udfs.core.live`). Each instance keeps the
accumulated overrides and their version in broadcast state (checkpointed, so a restore
keeps the live configuration); it switches when a change reaches it, and after a restore
reads the state once, before its first element or timer (no broadcast-state read per
event).

A valid change leaves one ``config_applied`` record on the drift/health output; a rejected
one goes to the dead-letter output with its problems. Both come from :class:`AuditControl`,
one instance that judges the same control records the same way (the detect instances
cannot tell which of them is the first: thread mode has no subtask index), so the output
does not depend on the parallelism. A change takes effect when it reaches each detect
instance, i.e. at a point of processing that depends on arrival (unlike everything else in
the job): the alerts say which version decided them.

PyFlink 2.3's thread mode drops side outputs yielded from ``on_timer`` of a keyed broadcast
function (the embedded operation does not route tagged records there, unlike for a keyed
process function), so this operator yields every record on its main output as
``"<tag>\\t<json>"`` and :class:`SplitOutputs` routes them to the usual side outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyflink.common.typeinfo import Types
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    KeyedProcessFunction,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from udfs.core.config import DetectorConfig
from udfs.core.events import DeadLetter
from udfs.core.live import judge_control, resolve
from udfs.detect import DetectAnomalies
from udfs.tags import DEAD_LETTER_TAG, DRIFT_TAG, LATE_TAG, SCORES_TAG

__all__ = ["AuditControl", "DetectAnomaliesLive", "SplitOutputs", "live_config_descriptor"]

_CURRENT = "current"
_MAIN = "alerts"


def live_config_descriptor() -> MapStateDescriptor:
    """``"current" -> {"version": ..., "overrides": {...}}`` (JSON)."""
    return MapStateDescriptor("live-config", Types.STRING(), Types.STRING())


class DetectAnomaliesLive(KeyedBroadcastProcessFunction):  # type: ignore[misc]
    def __init__(self, cfg: DetectorConfig, **kwargs: Any) -> None:
        self._base = cfg
        # No state journal (the full state on every event): see DetectAnomalies.set_config.
        self._inner = DetectAnomalies(cfg, snapshot_every=1, defer=False, **kwargs)
        self._synced = False
        self._desc: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._inner.open(runtime_context)
        self._desc = live_config_descriptor()

    def _apply(self, stored: str | None) -> None:
        if stored is None:
            self._inner.set_config(self._base)
            return
        current = json.loads(stored)
        cfg, _ = resolve(self._base, current["overrides"], current["version"])
        if cfg is not None:  # validated before it was stored
            self._inner.set_config(cfg)

    def _sync(self, ctx: Any) -> None:
        # Every instance sees every change in process_broadcast_element; only after a
        # restore (or at start) must it read what the broadcast state already holds, once.
        if not self._synced:
            self._synced = True
            self._apply(ctx.get_broadcast_state(self._desc).get(_CURRENT))

    def process_element(self, value: Any, ctx: Any) -> Iterator[str]:
        self._sync(ctx)
        yield from _tagged(self._inner.process_element(value, ctx))

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[str]:
        self._sync(ctx)
        yield from _tagged(self._inner.on_timer(timestamp, ctx))

    def process_broadcast_element(self, value: str, ctx: Any) -> Iterator[str]:
        state = ctx.get_broadcast_state(self._desc)
        stored, _ = judge_control(self._base, state.get(_CURRENT), value)
        if stored is not None:
            state.put(_CURRENT, stored)
            self._synced = True
            self._apply(stored)
        return iter(())  # AuditControl reports it


class AuditControl(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by a constant: one instance reports each control record once (see above). Its
    state is one key holding the accumulated overrides, kept for the job's life on purpose
    (it is the live configuration, like the broadcast state): it does not grow with entities."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self._base = cfg
        self._state: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state = runtime_context.get_state(
            ValueStateDescriptor("live-config-audit", Types.STRING())
        )

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        stored, rec = judge_control(self._base, self._state.value(), value)
        if isinstance(rec, DeadLetter):
            yield DEAD_LETTER_TAG, json.dumps(rec.to_dict(), sort_keys=True)
            return
        self._state.update(stored)
        yield DRIFT_TAG, json.dumps(rec, sort_keys=True)


def _tagged(outputs: Iterator[Any]) -> Iterator[str]:
    for item in outputs:
        if isinstance(item, tuple):
            tag, payload = item
            yield f"{tag.tag_id}\t{payload}"
        else:
            yield f"{_MAIN}\t{item}"


class SplitOutputs(ProcessFunction):  # type: ignore[misc]
    """``"<tag>\\t<json>"`` back to the main output (alerts) and the side outputs."""

    def process_element(self, value: str, ctx: Any) -> Iterator[Any]:
        tag_id, _, payload = value.partition("\t")
        if tag_id == _MAIN:
            yield payload
        else:
            yield _TAGS[tag_id], payload


_TAGS = {t.tag_id: t for t in (DEAD_LETTER_TAG, DRIFT_TAG, LATE_TAG, SCORES_TAG)}
