"""Flink adapter: the keyed operator that runs one :class:`EntityDetector` per entity.

Thin by design: parse the line (the core's parser), load the entity's state, call the core,
store the state, yield the outputs. No detection rule lives here. The lines come keyed by
Flink SQL (job/pipeline.py ``front``), so no second Python operator parses ahead of this
one. They come grouped: an entity's lines in one call, as the
line batcher ahead of the key hands them over (``(entity, [line, ...])``, job/pipeline.py
``batch_lines``), or one line per call without it (``(entity, line)``). A group is processed
line by line and the state is written once for it (the events and verdicts appended to the
journal in order), so what a call costs besides the lines (PyFlink's call, the cache, the
state write, the timers) is paid once per group; the records are those of one call per line
(tests/adapters/test_operator.py). Two event-time timers per entity at most:

- the *release* timer at or before the oldest buffered timestamp: when the watermark passes
  it, the detector may release buffered events without waiting for the entity's next event.
  Like the watch timer it is moved only earlier: an in-order entity buffers each event until
  its next one, and moving the timer to it cost two timer calls per event (a fifth of the
  operator's time); a timer that fires before the oldest buffered event only releases what
  the watermark allows and is registered again at that event;
- the *watch* timer at the entity's stale deadline (``EntityDetector.stale_deadline_ms``:
  the core reports a ``stale_entity`` record once the watermark passes it), or, when there is
  none, at its idle deadline ``newest timestamp + idle_ttl_ms``: when the watermark passes
  that and the entity has been quiet, its state is cleared. The watch timer is moved only
  earlier on an event; when it fires early (the entity has reported since), it is registered
  again at the next deadline, so an event costs no timer call. At the end of a bounded input
  the final watermark fires them all: everything is released, reported and then cleared.

Whether a timer fires early or late changes no record, only when it leaves: the core
decides staleness from event time, and reports a silence no timer reported when the
entity's next event shows it.

State is a snapshot plus a journal (see :mod:`state.descriptors`): the detector's full
snapshot is encoded only on every ``snapshot_every``-th write of an entity; the writes in
between append what the detector was given (the event or verdict payload, or the watermark
of a timer) to the journal. Encoding the snapshot was a quarter of the operator's time per
event. The state is still written on every event, so a checkpoint holds exactly what
produced the outputs before it: restoring decodes the snapshot and feeds the journal to the
detector again, outputs discarded, which rebuilds the same detector (the core is
deterministic). A read that misses the decoded-detector cache (after a restore, or with more
active entities than the cache holds) writes a full snapshot, so an entity that keeps
missing pays no replay.

An event that misses a full cache is *deferred*: appended, unread, to the entity's pending
inputs in its state (with the release timer moved to it when earlier; a new entity's state
holds no detector yet), and applied, in arrival order and with their records, the next time
the detector is loaded: on its release timer or the entity's next input. The state is read
and written but not decoded, restored or encoded. An entity past the cache then costs one
detector load per event instead of two (the event's and its release timer's). With room in
the cache the detector is loaded at once: it stays there for its timer. Only when a record
leaves changes: the detector sees the same inputs in the same order, before any watermark
that came after them. At most :data:`MAX_PENDING` inputs wait; verdicts, and events of a
cached entity, are applied at once, and so is everything in the live operator
(udfs/detect_live.py: a live configuration applies from the next input, not from the next
load).

The cache holds what this instance last wrote for the entity (the value and the detector it
was encoded from), so a hit reads no state at all: within one instance nothing else writes
an entity's state, and an instance restored from a checkpoint, or given other keys after a
rescale, starts with an empty cache. The one other change is the processing-time TTL
backstop (:mod:`state.descriptors`), which can expire a value not written for
``state_ttl_ms``: a cached entry older than that is not used, so the state decides. A read
on every event would cost a call into the JVM and the unpickling of the whole value.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from state.codec import decode, decode_value, encode
from state.descriptors import entity_state_descriptor
from state.upgrade import upgrade
from udfs.core.config import ConfigStamp, DetectorConfig, config_from_stamp, config_stamp
from udfs.core.detector import EntityDetector, Output
from udfs.core.events import AMBIGUOUS_ENTITY, DeadLetter, Event, ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict
from udfs.core.guard import Discard, Step, apply, feed, internal_error
from udfs.core.models.artifact import load_artifact
from udfs.metrics import DeadLetterCounters, DetectorMetrics
from udfs.parse import dead_letter_json, handoff
from udfs.tags import DEAD_LETTER_TAG, DRIFT_TAG, LATE_TAG, SCORES_TAG

__all__ = ["MAX_PENDING", "DetectAnomalies", "entry_size", "load_detector", "score_row", "stored_size"]

_NO_TIMER = -1
#: Events deferred per entity at most (a cache miss; see the module docstring).
MAX_PENDING = 32
# Payloads (udfs.parse.handoff bytes; JSON in state written before them) and watermarks.
_Entry = bytes | str | int
_Journal = tuple[_Entry, ...]
# (written at, monotonic s; detector; release timer; watch timer; snapshot; journal; bytes)
_Cached = tuple[float, EntityDetector, int, int, bytes, _Journal, int]


def _step(entity: str, entry: _Entry) -> Step:
    """The step a journal entry records: a watermark (int), or a payload
    (``udfs.parse.handoff``: the pickled bytes of an event tuple, a verdict dict or a discard,
    read back with the state's restricted codec; state written before payloads were pickled
    holds JSON strings)."""
    if isinstance(entry, int):
        return entry
    obj = decode_value(entry) if isinstance(entry, bytes) else json.loads(entry)
    if isinstance(obj, tuple):
        ts_ms, metrics, eid = obj
        return Event(entity, ts_ms, metrics, eid)
    if "verdict" in obj:  # an operator's verdict (udfs/parse.py verdict_payload)
        return Verdict(obj["alert_id"], entity, obj["verdict"], obj["reason"], obj["ts_ms"])
    if "discard" in obj:  # a buffered event refused by the guard (udfs/core/guard.py)
        ts_ms, metrics, eid = obj["discard"]
        return Discard(Event(entity, ts_ms, metrics, eid))
    return Event(entity, obj["ts"], obj["metrics"], obj.get("id"))


def _entry(step: Step) -> _Entry:
    """The journal entry of a step that took effect (read back by :func:`_step`)."""
    if isinstance(step, int):
        return step
    if isinstance(step, Discard):
        ev = step.event
        return pickle.dumps({"discard": (ev.ts_ms, ev.metrics, ev.id)}, pickle.HIGHEST_PROTOCOL)
    if isinstance(step, (Event, Verdict)):
        return handoff(step)[2]
    raise TypeError(f"no journal entry for {step!r}")


def _feed(det: EntityDetector, entry: _Entry) -> tuple[list[Output], bool]:
    """Give the detector one journal entry (:func:`_step`), unguarded: the journal holds only
    steps that took effect. Returns its outputs and whether it was a verdict."""
    step = _step(det.entity, entry)
    return apply(det, step), isinstance(step, Verdict)


def entry_size(entry: _Entry) -> int:
    """Bytes of one journal entry: a payload's bytes (or JSON string), 8 for a watermark."""
    return 8 if isinstance(entry, int) else len(entry)


def load_detector(
    entity: str,
    cfg: DetectorConfig,
    stored: Any,
    stamp: ConfigStamp | None = None,
    with_features: bool = True,
) -> EntityDetector:
    """The detector an entity's stored state holds: its snapshot, then its journal replayed,
    ready to go on under ``cfg``.

    The journal is replayed under the configuration it was written under (the stamp stored
    with it, :func:`udfs.core.config.config_stamp`), so a job restarted from a savepoint with
    another configuration re-decides nothing: the events journaled before the savepoint are
    learned as they were decided, and the new configuration applies from the next event, as
    with a full snapshot. When that configuration cannot be rebuilt (an upgrade changed a
    default), the journal is replayed under ``cfg``. ``stamp``: ``config_stamp(cfg)``.
    ``with_features``: see :class:`EntityDetector` (the replayed outputs are discarded).
    """
    journal = stored[4] if len(stored) > 4 else ()
    written = stored[5] if len(stored) > 5 else None
    if stamp is None:
        stamp = config_stamp(cfg)
    under = cfg
    if journal and written is not None and tuple(written) != stamp:
        under = config_from_stamp(tuple(written)) or cfg
    det = EntityDetector.restore(entity, under, upgrade(decode(stored[3])), with_features)
    for entry in journal:
        _feed(det, entry)  # (only steps that took effect: it does not raise)
    if under is not cfg:
        det = EntityDetector.restore(entity, cfg, det.snapshot(), with_features)
    return det


def stored_size(stored: Any) -> int:
    """Bytes of an entity's stored detector: the snapshot, the journal's entries, the
    configuration stamp that goes with them and the deferred inputs."""
    journal = stored[4] if len(stored) > 4 else ()
    stamp = len(stored[5][0]) + len(stored[5][1]) if len(stored) > 5 else 0
    pending = sum(entry_size(e) for e in stored[6]) if len(stored) > 6 else 0
    snapshot = len(stored[3]) if stored[3] is not None else 0  # (None: a new entity's)
    return snapshot + sum(entry_size(e) for e in journal) + stamp + pending


def score_row(rec: dict[str, Any], with_features: bool = False) -> dict[str, Any]:
    """The fields of a score record that leave the job (features only on request)."""
    row = {k: v for k, v in rec.items() if k != "features"}
    if with_features:
        # NaN (an undefined statistic) is not JSON: it leaves as null.
        row["features"] = {k: (None if v != v else v) for k, v in rec["features"].items()}
    return row


class DetectAnomalies(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by entity; takes ``(entity, raw line)`` (``udfs.tags.LINE_TYPE``), the entity
    as Flink read it to key the line, and parses the line itself (``parse``); main output:
    alert records (JSON); side outputs: late, scores, drift, dead letters.

    A line that is not an event or a verdict is a dead letter with the parser's reason. A
    line whose entity the parser reads differently from Flink's JSON functions, which keyed
    it (job/pipeline.py ``front``), is one with reason ``ambiguous_entity``: it reached the
    state of another key, so it touches no state."""

    def __init__(
        self,
        cfg: DetectorConfig,
        emit_scores: bool = False,
        emit_features: bool = False,
        state_ttl_ms: int = 7 * 86_400_000,
        cache_size: int = 4096,
        snapshot_every: int = 16,
        parse: ParseConfig | None = None,
        artifacts: dict[str, bytes] | None = None,
        defer: bool = True,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self._cfg = cfg
        self._parse = parse if parse is not None else ParseConfig()
        self._dead: DeadLetterCounters | None = None
        self._emit_scores = emit_scores
        self._emit_features = emit_features
        self._state_ttl_ms = state_ttl_ms
        self._cache_size = cache_size
        self._snapshot_every = snapshot_every
        self._defer_misses = defer
        # The bytes of the custom models' artifacts (detector.model.custom), read by the
        # client: the workers need no shared file system, and score what was checked.
        self._artifacts = dict(artifacts or {})
        self._stamp = config_stamp(cfg)
        self._state: Any = None
        self._metrics: Any = None
        self._loaded_bytes = 0  # size of the state _load read (metrics)
        # What _load read, for _store: the snapshot bytes and journal kept in state, and
        # whether they were decoded (a cache miss: the next write is a full snapshot).
        self._snap: bytes | None = None
        self._journal: _Journal = ()
        self._missed = True
        self._pending: _Journal = ()  # deferred inputs _load read, to apply first

    def open(self, runtime_context: RuntimeContext) -> None:
        for path, content in self._artifacts.items():
            load_artifact(path, content)
        self._state = runtime_context.get_state(entity_state_descriptor(self._state_ttl_ms))
        # A read cache: per entity, what this instance last wrote to its state and the
        # detector that was encoded from (see the module docstring). The state is still
        # written on every event (exactly-once: a checkpoint holds the state behind the
        # outputs before it); the cache saves reading, decoding and replaying it. Each write
        # carries this instance's nonce as its token: a value this instance did not write
        # (restored) is told apart by it (metrics). (State written before the cache served
        # hits carries (nonce, sequence); only the nonce is read.)
        self._nonce = os.urandom(8).hex()
        self._token = (self._nonce,)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._ttl_s = self._state_ttl_ms / 1000.0 if self._state_ttl_ms > 0 else float("inf")
        self._metrics = DetectorMetrics(runtime_context.get_metrics_group())
        self._dead = DeadLetterCounters(self._metrics.group)

    def set_config(self, cfg: DetectorConfig) -> None:
        """Decide under ``cfg`` from now on (a live change, udfs/detect_live.py): detectors
        are rebuilt from state with it, so the decoded ones cached under the old are dropped.

        A journal replayed under ``cfg`` would re-decide events that were decided (and whose
        records left) under the old configuration: an episode could open in the replay that
        no record announced. The configuration stamp stored with the journal replays it under
        the configuration it was written under (:func:`load_detector`), which would cover a
        live change too; that path has no test with live changes yet, so the live operator
        runs with ``snapshot_every=1`` (no journal), and a journal is refused here."""
        if self._snapshot_every != 1:
            raise RuntimeError("a live configuration needs snapshot_every=1 (no journal)")
        self._cfg = cfg
        self._stamp = config_stamp(cfg)
        self._cache.clear()

    # -- state ------------------------------------------------------------------------------

    def _load(self, entity: str) -> tuple[EntityDetector, int, int]:
        hit = self._cache.get(entity)
        if hit is not None:
            written_at, det, release_timer, watch_timer, self._snap, self._journal, size = hit
            if time.monotonic() - written_at < self._ttl_s:
                self._pending = ()  # (a cached entity is never deferred)
                self._cache.move_to_end(entity)
                self._loaded_bytes = size
                self._missed = False
                return det, release_timer, watch_timer
            del self._cache[entity]  # the state TTL may have expired it: the state decides
        self._pending = ()
        stored = self._state.value()
        if stored is None:
            self._loaded_bytes = 0
            self._snap, self._journal, self._missed = None, (), True
            return EntityDetector(entity, self._cfg, self._emit_features), _NO_TIMER, _NO_TIMER
        release_timer, watch_timer, token = stored[0], stored[1], stored[2]
        self._snap = stored[3]
        self._journal = stored[4] if len(stored) > 4 else ()  # (state written before journals)
        self._pending = stored[6] if len(stored) > 6 else ()
        if self._snap is None:  # a new entity whose first events were deferred
            self._journal, self._missed = (), True
            self._loaded_bytes = stored_size(stored)
            return EntityDetector(entity, self._cfg, self._emit_features), release_timer, watch_timer
        self._loaded_bytes = size = stored_size(stored)
        if token[0] != self._nonce:
            # Written before this instance started (restored from a checkpoint): count the
            # entity and its bytes as held from now on (every store writes this nonce).
            self._metrics.restored(size)
        self._missed = True
        det = load_detector(entity, self._cfg, stored, self._stamp, self._emit_features)
        return det, release_timer, watch_timer

    def _store(
        self,
        det: EntityDetector,
        release_timer: int,
        watch_timer: int,
        ts: Any,
        given: list[Step],
        new: bool = False,
    ) -> None:
        """Write the entity's state: a full snapshot, or the last one and the journal with
        ``given`` (the steps that took effect in one call, in order: events, verdicts and
        discards, or a timer's watermark) appended."""
        earliest = det.earliest_buffered_ms()
        release = release_timer
        if earliest is not None and (release == _NO_TIMER or earliest < release):
            release = earliest
        watch = watch_timer
        due = det.stale_deadline_ms()
        if due is None:
            due = det.idle_deadline_ms()
        if watch == _NO_TIMER or due < watch:
            watch = due
        if release != release_timer or watch != watch_timer:
            # Flink keeps one timer per key and timestamp: delete only timestamps no longer
            # used by either timer, register only new ones.
            kept = {release, watch}
            for old in {release_timer, watch_timer} - kept - {_NO_TIMER}:
                ts.delete_event_time_timer(old)
            for t in kept - {release_timer, watch_timer, _NO_TIMER}:
                ts.register_event_time_timer(t)
        journal = self._journal
        data = self._snap
        added = len(given)
        if data is None or self._missed or len(journal) + added >= self._snapshot_every:
            data = encode(det.snapshot())
            journal = ()
            size = stored_size((0, 0, 0, data, journal, self._stamp))
        else:
            # Pickled only when journaled (udfs.parse.handoff: what _feed reads back).
            entries = tuple(_entry(g) for g in given)
            journal = (*journal, *entries)
            # what _load read, and the entries
            size = self._loaded_bytes + sum(entry_size(e) for e in entries)
        self._state.update((release, watch, self._token, data, journal, self._stamp))
        cache = self._cache
        cache[det.entity] = (time.monotonic(), det, release, watch, data, journal, size)
        cache.move_to_end(det.entity)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        self._metrics.stored(size, self._loaded_bytes, new)

    # -- Flink callbacks --------------------------------------------------------------------

    def _rebuild(self, entity: str, steps: list[Step]) -> EntityDetector:
        """The entity's detector as this call found it (what _load read), with ``steps``
        applied: what the guard goes on from when an input raised (udfs/core/guard.py)."""
        if self._snap is None:
            det = EntityDetector(entity, self._cfg, self._emit_features)
        else:
            stored = (0, 0, self._token, self._snap, self._journal, self._stamp)
            det = load_detector(entity, self._cfg, stored, self._stamp, self._emit_features)
        for step in steps:
            apply(det, step)
        return det

    def _defer(self, entity: str, ev: Event, service: Any) -> bool:
        """Append ``ev`` to the entity's pending inputs without loading its detector, when
        that is allowed (see the module docstring); False when it must be applied now."""
        if not self._defer_misses or entity in self._cache or len(self._cache) < self._cache_size:
            return False  # (with room in the cache, the detector loaded now stays for its timer)
        stored = self._state.value()
        held = stored is not None  # bytes the metrics count as held already
        if stored is None:  # a new entity: no detector yet, its first events pending
            stored = (_NO_TIMER, _NO_TIMER, self._token, None, (), self._stamp)
        elif len(stored) < 6:
            return False  # state from before the configuration stamp: loaded as usual
        pending = stored[6] if len(stored) > 6 else ()
        if len(pending) >= MAX_PENDING:
            return False
        before = stored_size(stored)
        if stored[2][0] != self._nonce:
            # Restored: count it as _load would (an entity with no detector yet is counted
            # when its first store is, as a new one).
            if stored[3] is not None:
                self._metrics.restored(before)
            else:
                held = False
        release, watch = stored[0], stored[1]
        if release == _NO_TIMER or ev.ts_ms < release:
            if release not in (_NO_TIMER, watch):
                service.delete_event_time_timer(release)
            if ev.ts_ms != watch:
                service.register_event_time_timer(ev.ts_ms)
            release = ev.ts_ms
        entry = _entry(ev)
        self._state.update((release, watch, self._token, *stored[3:6], (*pending, entry)))
        self._metrics.stored(before + entry_size(entry), before if held else 0, False)
        return True

    def _take_pending(
        self, det: EntityDetector, given: list[Step], rebuild: Any
    ) -> tuple[EntityDetector, list[Output]]:
        """Apply the deferred inputs :meth:`_load` read, in order (their steps join
        ``given``): what each would have done on arrival, now."""
        outputs: list[Output] = []
        for entry in self._pending:
            det, out, steps = feed(det, _step(det.entity, entry), rebuild)
            given.extend(steps)
            outputs += out
        self._pending = ()
        return det, outputs

    def _parse_line(self, line: str) -> Event | Verdict | DeadLetter:
        now = int(time.time() * 1000) if self._parse.max_future_skew_ms else None
        try:
            return parse_event_or_verdict(line, self._parse, now)
        except Exception as exc:  # the parser never raises on input; if it did, a dead letter
            return internal_error(line, exc)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        entity, lines = value
        if isinstance(lines, str):  # one line: not batched (job/pipeline.py batch_lines)
            lines = (lines,)
        det: EntityDetector | None = None
        release_timer = watch_timer = _NO_TIMER
        given: list[Step] = []  # what took effect in this call, in order (the journal's)

        def rebuild(steps: Sequence[Step]) -> EntityDetector:
            return self._rebuild(entity, [*given, *steps])

        for line in lines:
            rec = self._parse_line(line)
            if isinstance(rec, DeadLetter) or rec.entity != entity:
                if not isinstance(rec, DeadLetter):
                    rec = DeadLetter(
                        AMBIGUOUS_ENTITY,
                        "entity",
                        line,
                        f"entity {rec.entity!r} was read as {entity!r} when the line was keyed",
                    )
                if self._dead is not None:
                    self._dead.count(rec.reason)
                yield DEAD_LETTER_TAG, dead_letter_json(rec)
                continue
            if det is None:
                if isinstance(rec, Event) and self._defer(entity, rec, ctx.timer_service()):
                    continue
                det, release_timer, watch_timer = self._load(entity)
                det, outputs = self._take_pending(det, given, rebuild)
                yield from self._emit(outputs)
            if isinstance(rec, Verdict):
                self._metrics.verdict()
            det, outputs, steps = feed(det, rec, rebuild)
            if watch_timer == _NO_TIMER and det.max_seen_ms < 0 and det.earliest_buffered_ms() is None:
                # A verdict for an entity with no state that left nothing to keep: nothing is
                # stored (a new entity is the only one stored without a watch timer yet).
                det = None
            else:
                given.extend(steps)
            yield from self._emit(outputs)
        if det is not None:
            new = watch_timer == _NO_TIMER
            self._store(det, release_timer, watch_timer, ctx.timer_service(), given, new)
        self._metrics.flush()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        entity = ctx.get_current_key()
        det, release_timer, watch_timer = self._load(entity)
        if self._snap is None and not self._pending:  # cleared already (a timer Flink still held)
            return
        new = self._snap is None  # a new entity whose first events were deferred
        service = ctx.timer_service()
        at = max(service.current_watermark(), timestamp)
        if timestamp == release_timer:
            release_timer = _NO_TIMER  # it has fired; _store registers the next one
        given: list[Step] = []

        def rebuild(steps: Sequence[Step]) -> EntityDetector:
            return self._rebuild(entity, [*given, *steps])

        det, outputs = self._take_pending(det, given, rebuild)  # (they came before this)
        # Releases, and reports a stale entity (core); guarded like an input.
        det, released, steps = feed(det, at, rebuild)
        outputs += released
        given.extend(steps)
        if timestamp == watch_timer:
            watch_timer = _NO_TIMER  # _store registers the next deadline (after ``at``)
            if det.earliest_buffered_ms() is None and det.idle_deadline_ms() <= at:
                self._state.clear()
                self._cache.pop(entity, None)
                self._metrics.cleared(self._loaded_bytes)
                if release_timer != _NO_TIMER:
                    service.delete_event_time_timer(release_timer)
                yield from self._emit(outputs + det.expire())
                self._metrics.flush()
                return
        self._store(det, release_timer, watch_timer, service, given, new)
        yield from self._emit(outputs)
        self._metrics.flush()

    def _emit(self, outputs: list[Output]) -> Iterator[Any]:
        metrics = self._metrics
        for kind, rec in outputs:
            metrics.record(kind, rec)
            if kind == "alert":
                yield json.dumps(rec, sort_keys=True)
            elif kind == "late":
                yield LATE_TAG, json.dumps(rec, sort_keys=True)
            elif kind == "dead_letter":  # a record refused by the detector or its guard
                if self._dead is not None:
                    self._dead.count(rec["reason"])
                yield DEAD_LETTER_TAG, json.dumps(rec, sort_keys=True)
            elif kind == "drift":
                yield DRIFT_TAG, json.dumps(rec, sort_keys=True)
            elif kind == "score":
                if self._emit_scores:
                    yield (
                        SCORES_TAG,
                        json.dumps(score_row(rec, self._emit_features), sort_keys=True),
                    )
            else:
                raise ValueError(f"unknown output kind {kind!r} from the detector")
