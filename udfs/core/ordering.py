"""The first stage of an entity's detector: event-time order, per entity.

:class:`EventOrder` decides when each input of one entity is processed, and which inputs
are not processed at all. It returns the inputs that are due, in processing order; the
detector (:mod:`udfs.core.detector`) scores the events and applies the verdicts.

- **Order.** Events may arrive up to ``max_out_of_orderness_ms`` out of timestamp order:
  they wait in a buffer and are released in ``(ts, content)`` order once the entity's
  *frontier* passes them. The frontier is ``max(newest timestamp seen -
  max_out_of_orderness_ms, watermark + 1)`` and only moves forward; an event behind it is
  *late* (its own output, unscored). Equal timestamps are ordered by content, so the
  arrival order of the entity's own events never changes a result, and events of other
  entities never do (the frontier is the entity's own).
- **Verdicts** (operators' verdicts on alerts, :mod:`udfs.core.feedback`) with a ``ts`` wait
  like events and are applied before the events of the same timestamp; see
  :meth:`EventOrder.offer_verdict` for those applied at once.
- **Clocks.** An event more than ``max_clock_jump_ms`` ahead of the entity's newest one is
  *held apart* (a wrong clock, or a real gap in the entity's reporting). When
  ``clock_confirm_events`` held events agree, the clock really moved and they come in;
  when as many events of the old timeline come first, the held ones leave as dead letters
  (``clock_jump``); one the old timeline catches up with, or the watermark passes, comes in.
- **Bounds.** At most ``max_buffered_events`` wait for order (beyond, the oldest are
  released early), at most ``clock_confirm_events`` are held, at most
  :data:`MAX_PENDING_VERDICTS` verdicts wait.
"""

from __future__ import annotations

from typing import Any

from udfs.core.config import LatenessConfig
from udfs.core.events import CLOCK_JUMP, DeadLetter, Event, format_timestamp
from udfs.core.feedback import Verdict

__all__ = ["MAX_PENDING_VERDICTS", "NEG_INF", "EventOrder", "PendingVerdict"]

#: Verdicts an entity keeps waiting for its event time; more are applied at once.
MAX_PENDING_VERDICTS = 64
#: Before any event: no frontier, nothing seen.
NEG_INF = -(1 << 62)

#: A verdict waiting for the frontier: ``(ts_ms, alert_id, verdict, reason)``.
PendingVerdict = tuple[int, str, str, str]
#: An input due for processing: an event, or a verdict placed at its ``ts``.
Due = Event | PendingVerdict
Output = tuple[str, dict[str, Any]]


def _sort_key(ev: Event) -> tuple[int, str]:
    return (ev.ts_ms, ev.to_json())


class EventOrder:
    """Event-time order of one entity's inputs (see the module docstring).

    Every method returns ``(outputs, due)``: records to emit (``late``, ``dead_letter``)
    and the inputs due for processing, in order.

    Examples
    --------
    >>> order = EventOrder(LatenessConfig(max_out_of_orderness_ms=5_000))
    >>> order.offer(Event("e", 10_000, {"x": 1.0}))  # waits: an older one may still come
    ([], [])
    >>> out, due = order.offer(Event("e", 20_000, {"x": 2.0}))
    >>> [ev.ts_ms for ev in due]
    [10000]
    >>> out, due = order.offer(Event("e", 9_000, {"x": 0.0}))
    >>> [kind for kind, _ in out], due
    (['late'], [])
    """

    __slots__ = (
        "cfg",
        "frontier",
        "max_seen",
        "buffer",
        "held",
        "held_against",
        "verdicts",
    )

    def __init__(self, cfg: LatenessConfig) -> None:
        self.cfg = cfg
        self.frontier = NEG_INF
        self.max_seen = NEG_INF
        self.buffer: list[Event] = []
        # Events held for their clock, in arrival order, and how many events of the old
        # timeline have come since the first was held.
        self.held: list[Event] = []
        self.held_against = 0
        self.verdicts: list[PendingVerdict] = []

    # -- inputs ---------------------------------------------------------------------------

    def offer(self, ev: Event) -> tuple[list[Output], list[Due]]:
        """An event arrives."""
        cfg = self.cfg
        jump = cfg.max_clock_jump_ms
        if jump and self.max_seen != NEG_INF and ev.ts_ms > self.max_seen + jump:
            self.held.append(ev)
            if len(self.held) < cfg.clock_confirm_events:
                return [], []
            out = self._let_in(len(self.held))  # they follow: the clock moved
        else:
            out = self._insert(ev)
            if self.held:
                self.held_against += 1
                out += self._let_in_reached(self.max_seen + jump)
                if self.held and self.held_against >= cfg.clock_confirm_events:
                    out += [("dead_letter", self._clock_dead_letter(h)) for h in self.held]
                    self.held, self.held_against = [], 0
        frontier = self.max_seen - cfg.max_out_of_orderness_ms
        over = len(self.buffer) - cfg.max_buffered_events
        if over > 0 and self.buffer[over - 1].ts_ms >= frontier:
            frontier = self.buffer[over - 1].ts_ms + 1  # the oldest leave now: it is full
        return out, self._advance(frontier)

    def offer_verdict(self, verdict: Verdict) -> tuple[int | None, list[Due]]:
        """A verdict arrives: ``(apply_now_at, due)``.

        A verdict with a ``ts`` waits, like an event, until the frontier passes it. One
        without ``ts``, behind the frontier, dated more than ``idle_ttl_ms`` after the
        entity's newest event, or beyond :data:`MAX_PENDING_VERDICTS` waiting ones is to be
        applied at once, at ``apply_now_at`` (the entity's newest event time, or the
        verdict's own when later). The caller handles a verdict without ``ts`` for an entity
        with no event (it cannot be placed in time).
        """
        ts = verdict.ts_ms
        seen = self.max_seen != NEG_INF
        pending = self.verdicts
        if (
            ts is None
            or ts < self.frontier
            or (seen and ts > self.max_seen + self.cfg.idle_ttl_ms)
            or len(pending) >= MAX_PENDING_VERDICTS
        ):
            now = self.max_seen if seen else (ts or 0)
            return (now if ts is None else max(now, ts)), []
        item = (ts, verdict.alert_id, verdict.verdict, verdict.reason)
        i = len(pending)
        while i > 0 and pending[i - 1] > item:
            i -= 1
        pending.insert(i, item)
        return None, self._advance(self.max_seen - self.cfg.max_out_of_orderness_ms)

    def on_watermark(self, watermark_ms: int) -> tuple[list[Output], list[Due]]:
        """The stream promises nothing at or before ``watermark_ms``: release what it allows
        (held events it has reached are not ahead after all)."""
        out = self._let_in_reached(watermark_ms) if self.held else []
        return out, self._advance(watermark_ms + 1)

    def drain(self) -> tuple[list[Output], list[Due]]:
        """End of input: everything held or buffered is due."""
        out = self._let_in(len(self.held)) if self.held else []
        return out, self._advance(1 << 62)

    def discard(self, ev: Event) -> bool:
        """Take ``ev`` out of the buffer, unprocessed; False when it is not there."""
        for i, held in enumerate(self.buffer):
            if held == ev:
                del self.buffer[i]
                return True
        return False

    # -- timers ---------------------------------------------------------------------------

    def earliest_pending_ms(self) -> int | None:
        """Timestamp of the oldest event or verdict waiting, or of an event held for its
        clock (the release timer: a held event comes in once the watermark passes it)."""
        ev = self.buffer[0].ts_ms if self.buffer else None
        if self.verdicts:
            vt = self.verdicts[0][0]
            ev = vt if ev is None or vt < ev else ev
        if self.held:
            ht = min(h.ts_ms for h in self.held)
            ev = ht if ev is None or ht < ev else ev
        return ev

    def newest_ms(self) -> int:
        """The newest event (or, for an entity that has only had verdicts, the newest
        waiting verdict); ``NEG_INF`` before any."""
        newest = self.max_seen
        if self.verdicts and self.verdicts[-1][0] > newest:
            newest = self.verdicts[-1][0]
        return newest

    # -- internals ------------------------------------------------------------------------

    def _advance(self, frontier: int) -> list[Due]:
        if frontier > self.frontier:
            self.frontier = frontier
        f = self.frontier
        buf = self.buffer
        n = 0
        while n < len(buf) and buf[n].ts_ms < f:
            n += 1
        if not (self.verdicts and self.verdicts[0][0] < f):
            if not n:
                return []
            due_events, self.buffer = buf[:n], buf[n:]
            return list(due_events)
        pending = self.verdicts
        k = 0
        while k < len(pending) and pending[k][0] < f:
            k += 1
        verdicts, self.verdicts = pending[:k], pending[k:]
        ready, self.buffer = buf[:n], buf[n:]
        due: list[Due] = []
        i = 0
        for v in verdicts:  # a verdict before the events of its timestamp
            while i < len(ready) and ready[i].ts_ms < v[0]:
                due.append(ready[i])
                i += 1
            due.append(v)
        due.extend(ready[i:])
        return due

    def _insert(self, ev: Event) -> list[Output]:
        """An event into the buffer, or to the late output (nothing is released)."""
        if ev.ts_ms < self.frontier:
            return [("late", self._late_record(ev))]
        if ev.ts_ms > self.max_seen:
            self.max_seen = ev.ts_ms
        buf = self.buffer
        # In (ts, content) order; the content is compared only between events of equal
        # timestamp, so the usual in-order event costs no JSON.
        ts = ev.ts_ms
        i = len(buf)
        key: tuple[int, str] | None = None
        while i > 0:
            prev = buf[i - 1].ts_ms
            if prev < ts:
                break
            if prev == ts:
                if key is None:
                    key = _sort_key(ev)
                if _sort_key(buf[i - 1]) <= key:
                    break
            i -= 1
        buf.insert(i, ev)
        return []

    def _let_in(self, n: int) -> list[Output]:
        """The first ``n`` held events into the buffer, in arrival order."""
        let, self.held = self.held[:n], self.held[n:]
        if not self.held:
            self.held_against = 0
        out: list[Output] = []
        for h in let:
            out += self._insert(h)
        return out

    def _let_in_reached(self, horizon: int) -> list[Output]:
        """Let in every held event at or before ``horizon`` and, as each moves the newest
        timestamp, those then within ``max_clock_jump_ms`` of it."""
        out: list[Output] = []
        jump = self.cfg.max_clock_jump_ms
        while self.held:
            self.held.sort(key=lambda h: h.ts_ms > horizon)  # (stable: arrival order kept)
            n = sum(1 for h in self.held if h.ts_ms <= horizon)
            if not n:
                break
            out += self._let_in(n)
            horizon = max(horizon, self.max_seen + jump)
        return out

    def _clock_dead_letter(self, ev: Event) -> dict[str, Any]:
        cfg = self.cfg
        return DeadLetter(
            CLOCK_JUMP,
            "ts",
            ev.to_json(),
            f"{ev.ts_ms - self.max_seen} ms ahead of the entity's newest event "
            f"(lateness.max_clock_jump_ms = {cfg.max_clock_jump_ms}); its next "
            f"{cfg.clock_confirm_events} events did not follow",
        ).to_dict()

    def _late_record(self, ev: Event) -> dict[str, Any]:
        # Measured against the entity's own frontier (newest event minus the bound) whenever
        # that already makes the event late: the watermark's share of the frontier depends on
        # when Flink's watermark arrived (after a restore, say), this one does not.
        own = self.max_seen - self.cfg.max_out_of_orderness_ms
        frontier = own if ev.ts_ms < own else self.frontier
        return {
            "stage": "detector",
            "entity": ev.entity,
            "ts": format_timestamp(ev.ts_ms),
            "ts_ms": ev.ts_ms,
            "frontier_ms": frontier,
            "lateness_ms": frontier - ev.ts_ms,
            "reason": "behind the entity's event-time frontier",
            "event": ev.to_json(),
        }

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The stage's state as named plain data (see :mod:`state.layout`)."""
        return {
            "frontier": self.frontier,
            "max_seen": self.max_seen,
            "buffer": [(e.ts_ms, e.metrics, e.id) for e in self.buffer],
            "held": [(e.ts_ms, e.metrics, e.id) for e in self.held],
            "held_against": self.held_against,
            "verdicts": list(self.verdicts),
        }

    @classmethod
    def restore(cls, cfg: LatenessConfig, entity: str, data: dict[str, Any]) -> EventOrder:
        order = cls(cfg)
        order.frontier = int(data["frontier"])
        order.max_seen = int(data["max_seen"])
        order.buffer = [Event(entity, ts, m, eid) for ts, m, eid in data["buffer"]]
        order.held = [Event(entity, ts, m, eid) for ts, m, eid in data["held"]]
        order.held_against = int(data["held_against"])
        order.verdicts = [(int(t), str(a), str(k), str(r)) for t, a, k, r in data["verdicts"]]
        return order


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions.
if __name__ == "udfs.core.ordering":
    from udfs.core.native import bind

    bind(globals(), __file__, "ordering")
