"""The per-entity detector: order, features, models, calibration, threshold, alerts.

:class:`EntityDetector` is the whole detection logic of one entity behind a tiny interface:

- ``on_event(event) -> outputs``: buffer the event, release and score every event that is
  now safe to process in timestamp order;
- ``on_watermark(wm_ms) -> outputs``: the stream promises no event at or before ``wm_ms``
  (Flink's watermark); release what it allows (lower latency for quiet entities);
- ``flush() -> outputs``: end of input, release everything;
- ``snapshot() -> bytes`` / ``EntityDetector.restore(entity, cfg, data)``.

Outputs are ``(kind, record)`` pairs with kind ``score`` (one per scored event), ``alert``
(episode records, see :mod:`udfs.core.alerts`), ``late``, or ``drift`` (drift and health
records, see :mod:`udfs.core.drift` and, for ``stale_entity`` / ``entity_returned``,
:mod:`udfs.core.staleness`).

Staleness is decided from event time only: ``stale_deadline_ms()`` is when the entity
becomes stale if nothing arrives (its newest scored timestamp plus its silence threshold);
``on_watermark`` reports it once the watermark has passed that deadline, and an event that
arrives later than the deadline reports it first if no watermark did (the replay has no
watermarks). Both give the same record, so the Flink job only needs a timer at the deadline.

Event order and lateness are decided **per entity**, never by the arrival interleaving of
different entities, so the same input gives the same outputs on one core or many. The
entity's frontier ``F`` is ``max(newest timestamp seen - max_out_of_orderness_ms,
watermark + 1)``; it only moves forward. An event with ``ts < F`` is late; buffered events
with ``ts < F`` are released in ``(ts, content)`` order, so equal-timestamp events are
processed in an order that does not depend on their arrival. The only way the watermark can
change a result is an event that is behind the stream's global watermark, i.e. late by
Flink's own definition, which a replay without watermarks would still accept.

Scoring one event (pure functions of the entity's own past):

1. features from :class:`udfs.core.features.EntityFeatures` (windows exclude the event);
2. a z per (metric, ready window) with a floored standard deviation; the statistics scorer's
   raw score is the largest ``|z|``;
3. Half-Space Trees (:mod:`udfs.core.hst`, equal to River's) over the squashed z's and
   window ratios; scored before it learns the event;
4. each raw score becomes rarity against the entity's own history
   (:mod:`udfs.core.calibration`), the two rarities are combined, and compared with the
   entity's adaptive threshold;
5. the decision goes to the entity's :class:`udfs.core.alerts.EpisodeTracker`.
"""

from __future__ import annotations

import json
import math
from fnmatch import fnmatchcase
from typing import Any

from udfs.core.alert_filter import drops
from udfs.core.alerts import EpisodeTracker
from udfs.core.calibration import (
    AdaptiveThreshold,
    DecayedHistogram,
    linear_edges,
    rarity_to_score,
)
from udfs.core.config import DetectorConfig
from udfs.core.drift import SCORE, DriftMonitor
from udfs.core.events import CLOCK_JUMP, DeadLetter, Event, format_timestamp
from udfs.core.features import EntityFeatures
from udfs.core.feedback import ThresholdFeedback, Verdict
from udfs.core.hst import CompactHST, HSTStructure, get_structure
from udfs.core.maintenance import in_maintenance
from udfs.core.rules import allowed as rule_allows
from udfs.core.rules import rule_for
from udfs.core.staleness import InterArrival, silence_threshold_ms

__all__ = ["MAX_PENDING_VERDICTS", "UNPLACEABLE_VERDICT", "EntityDetector", "Output"]

# Verdicts an entity keeps waiting for its event time; more are applied at once.
MAX_PENDING_VERDICTS = 64
UNPLACEABLE_VERDICT = "unplaceable_verdict"

Output = tuple[str, dict[str, Any]]
# Per window of a metric: readiness key "<metric>.<window>", its mean and std feature keys,
# and the window's length.
_WindowKeys = tuple[tuple[str, str, str, int], ...]
# A metric's window keys, its window-ratio feature keys, its longest window's readiness key.
_MetricKeys = tuple[_WindowKeys, tuple[str, ...], str]

_NEG_INF = -(1 << 62)
# Calibration coordinates: log1p(|z|) for the statistics scorer, the raw score for HST.
_STATS_EDGES = linear_edges(0.0, 7.0, 140)
_HST_EDGES = linear_edges(0.0, 1.0, 100)
_Z_CAP = 1e3
_THRESHOLD_CLIP = 0.5  # decades above the current threshold
# 5: inter-arrival gaps and the stale flag (udfs.core.staleness); 4: pending verdicts.
_STATE_VERSION = 5
# Verdicts waiting for the entity's frontier: (ts_ms, alert_id, verdict, reason).
_PendingVerdict = tuple[int, str, str, str]


def _sort_key(ev: Event) -> tuple[int, str]:
    return (ev.ts_ms, ev.to_json())


class _Models:
    """What an entity learns; thrown away when the entity idles past its TTL."""

    __slots__ = (
        "features",
        "hst",
        "hst_metrics",
        "hst_perm",
        "cal_stats",
        "cal_hst",
        "threshold",
        "episodes",
        "feedback",
        "drift",
        "n_scored",
    )

    def __init__(self, entity: str, cfg: DetectorConfig) -> None:
        m = cfg.model
        self.features = EntityFeatures(cfg.features)
        self.hst: CompactHST | None = None
        self.hst_metrics: tuple[str, ...] = ()
        # Position in the detector's vector of each tree feature (trees take sorted names).
        self.hst_perm: tuple[int, ...] = ()
        self.cal_stats = DecayedHistogram(_STATS_EDGES, m.calibration_half_life)
        self.cal_hst = DecayedHistogram(_HST_EDGES, m.calibration_half_life)
        t = cfg.threshold
        self.threshold = AdaptiveThreshold(
            t.target_alert_rate, t.min_events, t.half_life, t.fallback_margin
        )
        self.episodes = EpisodeTracker(cfg.alerts, entity)
        self.feedback = ThresholdFeedback(cfg.feedback)
        self.drift: DriftMonitor | None = None
        self.n_scored = 0


class EntityDetector:
    """All detection state and logic of one entity. See the module docstring.

    Examples
    --------
    >>> from udfs.core.config import DetectorConfig
    >>> det = EntityDetector("srv-1", DetectorConfig())
    >>> out = det.on_event(Event("srv-1", 1_767_225_600_000, {"cpu": 50.0}))
    >>> out  # buffered: it may still be overtaken by an older event within 5 s
    []
    >>> [kind for kind, _ in det.flush()]
    ['score']
    """

    __slots__ = (
        "entity",
        "cfg",
        "_bound",
        "_frontier",
        "_max_seen",
        "_buffer",
        "_held",
        "_held_against",
        "_verdicts",
        "_last_ts",
        "_m",
        "_squash",
        "_warn",
        "_crit",
        "_longest",
        "_gaps",
        "_stale_sent",
        "_drift_epoch",
        "_keys",
        "with_features",
        "processing",
    )

    def __init__(self, entity: str, cfg: DetectorConfig, with_features: bool = True) -> None:
        self.entity = entity
        self.cfg = cfg
        # Whether score records carry every feature (``features``); else only the windows'
        # means and standard deviations and the ratios, which are all the scorer, the
        # explanations and the trees read (the same values, less work per event: the Flink
        # operator asks for all of them only when it emits them, ``sink.emit_features``).
        self.with_features = with_features
        self._bound = cfg.lateness.max_out_of_orderness_ms
        self._frontier = _NEG_INF
        self._max_seen = _NEG_INF
        self._buffer: list[Event] = []
        # Events far ahead of the entity's own clock (``max_clock_jump_ms``), held apart
        # until the entity's next events confirm or refute the jump; and how many events of
        # the old timeline have come since the first was held.
        self._held: list[Event] = []
        self._held_against = 0
        self._verdicts: list[_PendingVerdict] = []
        self._last_ts: int | None = None
        self._m = _Models(entity, cfg)
        self._squash = 1.0 / cfg.model.z_squash
        self._longest = max(cfg.features.windows, key=lambda w: w.length_ms).name
        self._keys: dict[str, _MetricKeys] = {}
        self._warn = math.log10(cfg.threshold.warning_factor)
        self._crit = math.log10(cfg.threshold.critical_factor)
        self._gaps = InterArrival(cfg.staleness.gap_samples)
        self._stale_sent = False
        self._drift_epoch = cfg.drift.reset_epoch  # a new entity starts with a new reference
        # The event being scored, while it is (None otherwise): when scoring raises, the
        # event to blame (udfs/core/guard.py), which may be one the buffer held.
        self.processing: Event | None = None

    # -- ordering --------------------------------------------------------------------------

    @property
    def last_ts_ms(self) -> int | None:
        """Timestamp of the newest scored event."""
        return self._last_ts

    @property
    def max_seen_ms(self) -> int:
        """Newest timestamp seen (scored or buffered)."""
        return self._max_seen

    def earliest_buffered_ms(self) -> int | None:
        """Timestamp of the oldest event or verdict waiting to be released, or of an event
        held for its clock (release timer: a held event is let in once the watermark passes
        it)."""
        ev = self._buffer[0].ts_ms if self._buffer else None
        if self._verdicts:
            vt = self._verdicts[0][0]
            ev = vt if ev is None or vt < ev else ev
        if self._held:
            ht = min(h.ts_ms for h in self._held)
            ev = ht if ev is None or ht < ev else ev
        return ev

    def idle_deadline_ms(self) -> int:
        """When the entity's state may be dropped if nothing else arrives: the newest event
        (or, for an entity that has only had verdicts, the newest verdict) plus the TTL."""
        newest = self._max_seen
        if self._verdicts and self._verdicts[-1][0] > newest:
            newest = self._verdicts[-1][0]
        if newest == _NEG_INF:
            newest = 0
        return newest + self.cfg.lateness.idle_ttl_ms

    def on_event(self, ev: Event) -> list[Output]:
        lc = self.cfg.lateness
        jump = lc.max_clock_jump_ms
        if jump and self._max_seen != _NEG_INF and ev.ts_ms > self._max_seen + jump:
            # Far ahead of the entity's own clock: a wrong clock, or a real jump (a gap in
            # its reporting). Held apart until the entity's next events tell which.
            self._held.append(ev)
            if len(self._held) < lc.clock_confirm_events:
                return []
            out = self._let_in(len(self._held))  # they follow: the clock moved
        else:
            out = self._insert(ev)
            if self._held:
                # The old timeline goes on: what it has caught up with comes in; after
                # ``clock_confirm_events`` of its events, the rest is refused.
                self._held_against += 1
                out += self._let_in_reached(self._max_seen + jump)
                if self._held and self._held_against >= lc.clock_confirm_events:
                    out += [("dead_letter", self._clock_dead_letter(h)) for h in self._held]
                    self._held, self._held_against = [], 0
        frontier = self._max_seen - self._bound
        buf = self._buffer
        over = len(buf) - lc.max_buffered_events
        if over > 0 and buf[over - 1].ts_ms >= frontier:
            frontier = buf[over - 1].ts_ms + 1  # the oldest leave now: the buffer is full
        return out + self._advance(frontier)

    def _let_in(self, n: int) -> list[Output]:
        """The first ``n`` held events into the order buffer, in arrival order."""
        let, self._held = self._held[:n], self._held[n:]
        if not self._held:
            self._held_against = 0
        out: list[Output] = []
        for h in let:
            out += self._insert(h)
        return out

    def _let_in_reached(self, horizon: int) -> list[Output]:
        """Let in every held event at or before ``horizon`` and, as each moves the entity's
        newest timestamp, those then within ``max_clock_jump_ms`` of it."""
        out: list[Output] = []
        jump = self.cfg.lateness.max_clock_jump_ms
        while self._held:
            self._held.sort(key=lambda h: h.ts_ms > horizon)  # (stable: arrival order kept)
            n = sum(1 for h in self._held if h.ts_ms <= horizon)
            if not n:
                break
            out += self._let_in(n)
            horizon = max(horizon, self._max_seen + jump)
        return out

    def _clock_dead_letter(self, ev: Event) -> dict[str, Any]:
        lc = self.cfg.lateness
        return DeadLetter(
            CLOCK_JUMP,
            "ts",
            ev.to_json(),
            f"{ev.ts_ms - self._max_seen} ms ahead of the entity's newest event "
            f"(lateness.max_clock_jump_ms = {lc.max_clock_jump_ms}); its next "
            f"{lc.clock_confirm_events} events did not follow",
        ).to_dict()

    def _insert(self, ev: Event) -> list[Output]:
        """An event into the order buffer, or to the late output (nothing is released)."""
        if ev.ts_ms < self._frontier:
            return [("late", self._late_record(ev))]
        if ev.ts_ms > self._max_seen:
            self._max_seen = ev.ts_ms
        buf = self._buffer
        # Insert in (ts, content) order (_sort_key); the content is compared only between
        # events of equal timestamp, so the usual in-order event costs no JSON.
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

    def discard_buffered(self, ev: Event) -> bool:
        """Take ``ev`` out of the order buffer, unscored (udfs/core/guard.py: it raised when
        released); False when the buffer does not hold it."""
        for i, held in enumerate(self._buffer):
            if held == ev:
                del self._buffer[i]
                return True
        return False

    def on_verdict(self, verdict: Verdict) -> list[Output]:
        """An operator's verdict on one of this entity's alerts (see :mod:`udfs.core.feedback`).

        A verdict with a ``ts`` takes effect at that point of the entity's event time: it
        waits, like an event, until the entity's frontier passes it, and is applied before
        the events of the same timestamp. So the result does not depend on how the verdict
        stream and the event stream interleave on arrival, as long as the verdict arrives
        before the entity's frontier passes its ``ts`` (the same premise as for events). A
        verdict behind the frontier, dated more than ``idle_ttl_ms`` after the entity's newest
        event, or beyond :data:`MAX_PENDING_VERDICTS` waiting ones, is applied at once; so is a
        verdict without ``ts``, at the entity's newest event time: its effect then depends on
        when it arrived. A verdict without ``ts`` for an entity that has had no event cannot be
        placed in time: it leaves as a dead letter (``unplaceable_verdict``).
        """
        ts = verdict.ts_ms
        seen = self._max_seen != _NEG_INF
        if ts is None and not seen:
            return [("dead_letter", _unplaceable(verdict))]
        pending = self._verdicts
        if (
            ts is None
            or ts < self._frontier
            or (seen and ts > self._max_seen + self.cfg.lateness.idle_ttl_ms)
            or len(pending) >= MAX_PENDING_VERDICTS
        ):
            now = self._max_seen if seen else (ts or 0)
            self._m.feedback.apply(verdict, now if ts is None else max(now, ts))
            return []
        item = (ts, verdict.alert_id, verdict.verdict, verdict.reason)
        i = len(pending)
        while i > 0 and pending[i - 1] > item:
            i -= 1
        pending.insert(i, item)
        return self._advance(self._max_seen - self._bound)

    def on_watermark(self, watermark_ms: int) -> list[Output]:
        # Held events the stream's time has reached are not ahead after all.
        out = self._let_in_reached(watermark_ms) if self._held else []
        out += self._advance(watermark_ms + 1)
        self._check_stale(watermark_ms, out)
        return out

    def flush(self) -> list[Output]:
        """End of input: release everything, report staleness and expire as the timers would."""
        out = self._let_in(len(self._held)) if self._held else []
        out += self._advance(1 << 62)
        self._check_stale(1 << 62, out)
        return out + self.expire()

    # -- staleness (udfs.core.staleness) ---------------------------------------------------

    def silence_threshold_ms(self) -> int | None:
        """The silence that makes this entity stale; None before its first gap or disabled."""
        interval = self._gaps.get()
        if interval is None or not self.cfg.staleness.enabled:
            return None
        return silence_threshold_ms(self.cfg.staleness, interval, self.cfg.lateness.idle_ttl_ms)

    def stale_deadline_ms(self) -> int | None:
        """When the entity becomes stale if no event arrives (for the adapter's timer).

        None when it cannot: no scored event or no gap yet, staleness disabled, or already
        reported for the current silence.
        """
        if self._stale_sent or self._last_ts is None:
            return None
        silence = self.silence_threshold_ms()
        return None if silence is None else self._last_ts + silence

    def _check_stale(self, watermark_ms: int, out: list[Output]) -> None:
        deadline = self.stale_deadline_ms()
        if deadline is not None and deadline <= watermark_ms:
            out.append(("drift", self._stale_record(deadline)))

    def _stale_record(self, deadline: int) -> dict[str, Any]:
        assert self._last_ts is not None
        self._stale_sent = True
        silence = deadline - self._last_ts
        return self._health_record(deadline, "stale_entity", silence, silence)

    def _returned_record(self, ts: int) -> dict[str, Any]:
        assert self._last_ts is not None
        threshold = self.silence_threshold_ms()
        return self._health_record(ts, "entity_returned", ts - self._last_ts, threshold)

    def _health_record(
        self, ts: int, check: str, silence: int, threshold: int | None
    ) -> dict[str, Any]:
        last = self._last_ts
        assert last is not None
        rec: dict[str, Any] = {
            "type": "health",
            "check": check,
            "value": silence,
            "threshold": threshold,
            "silence_ms": silence,
            "expected_interval_ms": self._gaps.get(),
            "last_seen_ts": format_timestamp(last),
            "last_seen_ts_ms": last,
            "current": {"from_ts": last, "to_ts": ts, "events": 0},
            "entity": self.entity,
            "ts": format_timestamp(ts),
            "ts_ms": ts,
            "config_version": self.cfg.config_version,
        }
        if in_maintenance(self.cfg.maintenance, self.entity, ts):
            rec["maintenance"] = True  # as on alerts: a planned silence, most likely
        return rec

    def expire(self) -> list[Output]:
        """The entity idled out (its TTL timer fired): close an open episode.

        The ``resolved`` record is dated at the idle deadline (newest timestamp plus
        ``idle_ttl_ms``) and says ``"resolution": "idle"``, so an episode never ends
        without a record even when the entity stops reporting.
        """
        if self._max_seen == _NEG_INF:
            return []
        at = self._max_seen + self.cfg.lateness.idle_ttl_ms
        return [("alert", rec) for rec in self._screened(self._m.episodes.close(at, "idle"))]

    def _advance(self, frontier: int) -> list[Output]:
        if frontier > self._frontier:
            self._frontier = frontier
        buf = self._buffer
        out: list[Output] = []
        f = self._frontier
        n = 0
        while n < len(buf) and buf[n].ts_ms < f:
            n += 1
        if self._verdicts and self._verdicts[0][0] < f:
            self._release_with_verdicts(n, f, out)
            return out
        if n:
            ready, self._buffer = buf[:n], buf[n:]
            for ev in ready:
                self._process(ev, out)
        return out

    def _release_with_verdicts(self, n: int, frontier: int, out: list[Output]) -> None:
        """Release ``n`` events and the due verdicts in timestamp order (a verdict first)."""
        pending = self._verdicts
        k = 0
        while k < len(pending) and pending[k][0] < frontier:
            k += 1
        due, self._verdicts = pending[:k], pending[k:]
        ready, self._buffer = self._buffer[:n], self._buffer[n:]
        i = 0
        for ts, alert_id, kind, reason in due:
            while i < len(ready) and ready[i].ts_ms < ts:
                self._process(ready[i], out)
                i += 1
            # (self._m, not a local: _process replaces the models after an idle gap)
            self._m.feedback.apply(Verdict(alert_id, self.entity, kind, reason, ts), ts)
        while i < len(ready):
            self._process(ready[i], out)
            i += 1

    def _late_record(self, ev: Event) -> dict[str, Any]:
        # Measured against the entity's own frontier (newest event minus the bound) whenever
        # that already makes the event late: the watermark's share of the frontier depends on
        # when Flink's watermark arrived (after a restore, say), this one does not.
        own = self._max_seen - self._bound
        frontier = own if ev.ts_ms < own else self._frontier
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

    # -- scoring ---------------------------------------------------------------------------

    def _process(self, ev: Event, out: list[Output]) -> None:
        self.processing = ev
        self._score(ev, out)
        self.processing = None

    def _score(self, ev: Event, out: list[Output]) -> None:
        cfg = self.cfg
        ts = ev.ts_ms
        last = self._last_ts
        if last is not None:
            # A silence no watermark has reported (always so in a replay): report it now.
            deadline = self.stale_deadline_ms()
            if deadline is not None and ts > deadline:
                out.append(("drift", self._stale_record(deadline)))
            if ts - last > cfg.lateness.idle_ttl_ms:
                # Idle past its TTL: the Flink job cleared the entity; it starts fresh.
                closed = self._m.episodes.close(last + cfg.lateness.idle_ttl_ms, "idle")
                out.extend(("alert", rec) for rec in self._screened(closed))
                self._m = _Models(self.entity, cfg)
                self._gaps = InterArrival(cfg.staleness.gap_samples)
                self._stale_sent = False
            else:
                if self._stale_sent:
                    if cfg.staleness.enabled:
                        out.append(("drift", self._returned_record(ts)))
                    self._stale_sent = False
                self._gaps.update(ts - last)
        self._last_ts = ts
        m = self._m
        maintenance = in_maintenance(cfg.maintenance, self.entity, ts)
        learn = not maintenance or cfg.maintenance.learn
        before = None if learn else m.features.snapshot()
        values, ready = m.features.update(ts, ev.metrics, self.with_features)
        if before is not None:  # scored against the windows, which do not learn it
            m.features = EntityFeatures.restore(cfg.features, before)
        if not m.hst_metrics:
            self._init_entity(ev)

        # Statistics scorer: largest |z| over ready windows, and the HST input vector (only
        # when the trees exist: combine=stats, the default, builds none).
        squash = self._squash
        vec: list[float] = []
        best = 0.0
        any_ready = False
        frac = cfg.model.std_floor_fraction
        for metric in m.hst_metrics if m.hst is not None else ():
            x = ev.metrics.get(metric)
            wkeys, ratio_keys, _ = self._keys_of(metric)
            noise = _noise_floor(wkeys, values, ready, frac)
            for key, mean_key, std_key, _length in wkeys:
                if x is None or not ready.get(key, False):
                    vec.append(0.5)
                    continue
                any_ready = True
                z = _z(x, values[mean_key], values[std_key], noise)
                vec.append(0.5 + 0.5 * math.tanh(z * squash))
                az = abs(z)
                if az > best:
                    best = az
            for ratio_key in ratio_keys:
                r = values.get(ratio_key, 1.0) if x is not None else 1.0
                lr = math.log(r) if r > 0.0 else 0.0
                vec.append(0.5 + 0.5 * math.tanh(lr))
        # Metrics not in the trees (they appeared after the entity's first event) still count
        # for the statistics scorer.
        for metric, x in ev.metrics.items():
            if m.hst is not None and metric in m.hst_metrics:
                continue
            wkeys = self._keys_of(metric)[0]
            noise = _noise_floor(wkeys, values, ready, frac)
            for key, mean_key, std_key, _length in wkeys:
                if ready.get(key, False):
                    any_ready = True
                    az = abs(_z(x, values[mean_key], values[std_key], noise))
                    if az > best:
                        best = az

        # Warm: every metric of the event has its longest window (the baseline) covered by
        # history. Before that the event is scored but nothing learns from it and nothing
        # alerts: the trees would otherwise learn a feature vector whose baseline dimensions
        # are placeholders, and call the first day's end an anomaly.
        warm = any_ready and all(
            ready.get(self._keys_of(metric)[2], False) for metric in ev.metrics
        )
        hst = m.hst
        if hst is not None:
            vec = [vec[i] for i in m.hst_perm]
            hst_raw = hst.score_vec(vec)
            hst_warm = warm and not hst.first_window
        else:  # combine=stats: the trees are not built at all
            hst_raw = 0.0
            hst_warm = False
        mc = cfg.model
        u_stats = (
            -math.log10(m.cal_stats.survival(math.log1p(best), mc.tail_scale)) if any_ready else 0.0
        )
        u_hst = -math.log10(m.cal_hst.survival(hst_raw, 0.02)) if hst_warm else 0.0
        combine = mc.combine
        if combine == "max":
            u = u_stats if u_stats > u_hst else u_hst
        elif combine == "mean":
            u = 0.5 * (u_stats + u_hst)
        elif combine == "hst":
            u = u_hst
        else:
            u = u_stats
        is_ready = (
            warm
            and m.cal_stats.updates >= mc.min_calibration_events
            and (hst is None or (hst_warm and m.cal_hst.updates >= mc.min_calibration_events))
        )
        thr = m.threshold.current()
        # Hysteresis: an open episode goes on while the event stays within
        # ``hysteresis_decades`` of the threshold, so one incident is one episode even when
        # the windows start to absorb it.
        bar = thr - cfg.alerts.hysteresis_decades if m.episodes.open else thr
        unusual = is_ready and u >= bar  # the models' own judgement: what the trees skip
        # Operators' false positives make the entity stricter (udfs.core.feedback); no alert
        # opens or continues inside a maintenance window (udfs.core.maintenance).
        offset = m.feedback.offset(ts)
        alert_thr = thr + offset
        anomalous = unusual and u >= bar + offset and not maintenance
        held_back = maintenance and unusual and u >= bar + offset
        if held_back:  # counted: it travels on the next alert out (suppressed_before)
            m.episodes.suppress()
        # Calibration and threshold see every warm score. Learn-gating applies to the
        # trees: an event judged anomalous does not train them, so an anomaly does not
        # become normal. (Gating the calibration too was measured on the demo stream: the
        # tail it never sees then always looks rare, and false episodes rose from 11 to 19.)
        if warm and learn:
            x = math.log1p(best)
            if unusual and mc.clip_calibration:
                x_thr = m.cal_stats.quantile_upper(10.0 ** -thr)
                if x > x_thr:
                    x = x_thr
            m.cal_stats.update(x)
        if hst_warm and learn:
            m.cal_hst.update(hst_raw)
        if is_ready and learn:
            # Winsorised: a score far above the threshold counts as an exceedance without
            # dragging the quantile up with it, so one extreme incident does not make the
            # entity deaf for the rest of it (the quantile of a rate of 1e-3 rests on a
            # handful of events).
            m.threshold.update(min(u, thr + _THRESHOLD_CLIP))
        if hst is not None and warm and learn and (mc.learn_anomalies or not unusual):
            hst.learn_vec(vec)
        m.n_scored += 1

        severity = 0
        if anomalous:
            excess = u - alert_thr
            severity = 2 if excess >= self._crit else 1 if excess >= self._warn else 0
        score = rarity_to_score(u)
        threshold = rarity_to_score(alert_thr)
        episode_detail: dict[str, Any] = {}
        if anomalous:
            explained = self._explain(ev, values, ready, u, alert_thr)
            if explained is None:  # the rules (udfs.core.rules) rule out every leading feature
                anomalous = False
            else:
                episode_detail = explained
                if offset > 0.0:
                    episode_detail["threshold_offset"] = round(offset, 6)
        for rec in self._screened(m.episodes.on_decision(ts, anomalous, severity, episode_detail)):
            if maintenance:
                rec["maintenance"] = True
            out.append(("alert", rec))
        if is_ready and m.drift is not None:
            self._watch_drift(ts, ev, score, anomalous, out)
        score_rec = {
            "entity": self.entity,
            "ts_ms": ts,
            "anomaly_score": score,
            "threshold": threshold,
            "is_alert": 1 if anomalous else 0,
            "ready": 1 if is_ready else 0,
            "stats_raw": best,
            "hst_raw": hst_raw,
            "features": values,
        }
        if held_back:
            score_rec["suppressed"] = "maintenance"
        out.append(("score", score_rec))

    def _screened(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Episode records after the trained alert filter (when one is configured)."""
        if not records or not self.cfg.filter.enabled:
            return records
        return self._m.episodes.screen(records, self._drops)

    def _drops(self, rec: dict[str, Any]) -> bool:
        return drops(self.cfg.filter, rec)

    def _watch_drift(
        self, ts: int, ev: Event, score: float, anomalous: bool, out: list[Output]
    ) -> None:
        """Feed the drift monitor (ready events only: earlier scores are placeholders)."""
        m = self._m
        assert m.drift is not None
        dc = self.cfg.drift
        if dc.reset_epoch > self._drift_epoch:  # the operator's command (a live change)
            self._drift_epoch = dc.reset_epoch
            if fnmatchcase(self.entity, dc.reset_entities):
                m.drift.reset_reference()
                out.append(
                    (
                        "drift",
                        {
                            "type": "config",
                            "check": "drift_reference_reset",
                            "entity": self.entity,
                            "reset_epoch": dc.reset_epoch,
                            "ts": format_timestamp(ts),
                            "ts_ms": ts,
                            "config_version": self.cfg.config_version,
                        },
                    )
                )
        inputs = dict(ev.metrics)
        inputs[SCORE] = score
        reset = False
        for rec in m.drift.update(ts, inputs, anomalous):
            rec.update(
                entity=self.entity,
                ts=format_timestamp(ts),
                ts_ms=ts,
                config_version=self.cfg.config_version,
            )
            out.append(("drift", rec))
            reset |= rec.get("type") == "drift" and rec.get("action") == "reset"
        if reset:
            # The operator asked drift to reset the entity: a new baseline and new models,
            # keeping the open episode and the drift monitor (with its fresh reference).
            fresh = _Models(self.entity, self.cfg)
            fresh.episodes = m.episodes
            fresh.drift = m.drift
            fresh.feedback = m.feedback
            self._m = fresh

    def reset_drift_reference(self) -> None:
        """Operator command: freeze a new drift reference from now on."""
        if self._m.drift is not None:
            self._m.drift.reset_reference()

    def _keys_of(self, metric: str) -> _MetricKeys:
        """The feature-name strings the scorer reads for ``metric`` (built once per metric)."""
        keys = self._keys.get(metric)
        if keys is None:
            features = self.cfg.features
            wkeys = tuple(
                (f"{metric}.{w.name}", f"{metric}.{w.name}.mean", f"{metric}.{w.name}.std", w.length_ms)
                for w in features.windows
            )
            ratio_keys = tuple(f"{metric}.{s}_{lg}.ratio" for s, lg in features.ratio_pairs)
            keys = self._keys[metric] = (wkeys, ratio_keys, f"{metric}.{self._longest}")
        return keys

    def _init_entity(self, ev: Event) -> None:
        """On the entity's first event: its metric set, its trees (if used), its drift monitor."""
        m = self._m
        m.hst_metrics = tuple(sorted(ev.metrics))
        if self.cfg.model.combine != "stats":
            structure, m.hst_perm = self._structure(m.hst_metrics)
            m.hst = CompactHST(structure, self.cfg.model.hst_window)
        if m.drift is None and self.cfg.drift.enabled:
            m.drift = DriftMonitor(self.cfg.drift, [*(x for x in m.hst_metrics if x != SCORE), SCORE])

    def _structure(self, metrics: tuple[str, ...]) -> tuple[HSTStructure, tuple[int, ...]]:
        cfg = self.cfg
        names = []
        for metric in metrics:
            for w in cfg.features.windows:
                names.append(f"{metric}.{w.name}.z")
            for short, long_ in cfg.features.ratio_pairs:
                names.append(f"{metric}.{short}_{long_}.ratio")
        mc = cfg.model
        structure = get_structure(names, mc.hst_trees, mc.hst_height, mc.seed)
        pos = {name: i for i, name in enumerate(names)}
        return structure, tuple(pos[name] for name in structure.feature_names)

    def _explain(
        self,
        ev: Event,
        values: dict[str, float],
        ready: dict[str, bool],
        rarity: float,
        threshold_rarity: float,
    ) -> dict[str, Any] | None:
        """The alert body, or None when the rules rule out every leading feature."""
        contributions = []
        for metric, x in ev.metrics.items():
            wkeys = self._keys_of(metric)[0]
            noise = _noise_floor(wkeys, values, ready, self.cfg.model.std_floor_fraction)
            for key, mean_key, std_key, _length in wkeys:
                if not ready.get(key, False):
                    continue
                mean = values[mean_key]
                z = _z(x, mean, values[std_key], noise)
                contributions.append((-abs(z), key, x, mean, z, metric))
        contributions.sort()
        leading = contributions[: self.cfg.alerts.top_features]
        rules = self.cfg.rules
        if rules.rules:
            # Only the strongest contributions may carry an alert: a weak allowed feature
            # does not stand in for a strong one the rules rule out.
            leading = [c for c in leading if rule_allows(rules, c[5], c[2], c[3], c[4])]
            if not leading:
                return None
        top: list[dict[str, Any]] = [
            {"feature": f"{k}.zscore", "actual": x, "expected": mean, "z": round(z, 4)}
            for _, k, x, mean, z, _metric in leading
        ]
        direction = "dip" if leading and leading[0][4] < 0 else "spike"
        detail: dict[str, Any] = {
            "score": round(rarity_to_score(rarity), 6),
            "threshold": round(rarity_to_score(threshold_rarity), 6),
            # The same in decades (score = 1 - 10**-rarity): the score itself rounds to 1.0
            # above about six decades, where critical alerts live.
            "rarity": round(rarity, 4),
            "threshold_rarity": round(threshold_rarity, 4),
            "direction": direction,
            "features": top,
            "config_version": self.cfg.config_version,
        }
        if rules.rules and leading:
            rule = rule_for(rules, leading[0][5])
            if rule is not None:
                detail["rule"] = rule.metrics
        return detail

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        """The entity's complete state as plain data (see :mod:`state.codec`)."""
        m = self._m
        return (
            _STATE_VERSION,
            self._frontier,
            self._max_seen,
            [(e.ts_ms, e.metrics, e.id) for e in self._buffer],
            self._last_ts,
            m.features.pack(),
            m.hst_metrics,
            None if m.hst is None else m.hst.to_bytes(),
            m.cal_stats.snapshot(),
            m.cal_hst.snapshot(),
            m.threshold.snapshot(),
            m.episodes.snapshot(),
            m.n_scored,
            None if m.drift is None else m.drift.snapshot(),
            m.feedback.snapshot(),
            list(self._verdicts),
            self._gaps.snapshot(),
            self._stale_sent,
            self._drift_epoch,
            [(e.ts_ms, e.metrics, e.id) for e in self._held],
            self._held_against,
        )

    @classmethod
    def restore(
        cls, entity: str, cfg: DetectorConfig, snap: tuple[Any, ...], with_features: bool = True
    ) -> EntityDetector:
        if snap[0] == 3:  # before verdicts waited for the frontier: none pending
            snap = (*snap, [])
        if snap[0] in (3, 4):  # before stale entities: no inter-arrival gaps, not stale
            snap = (*snap, (), False)
        elif snap[0] != _STATE_VERSION:
            raise ValueError(f"entity {entity!r}: state version {snap[0]} is not {_STATE_VERSION}")
        if len(snap) == 18:  # before the drift reference command: no epoch applied yet
            snap = (*snap, 0)
        if len(snap) == 19:  # before events were held for their clock: none held
            snap = (*snap, [], 0)
        (
            _,
            frontier,
            max_seen,
            buffer,
            last_ts,
            feats,
            hst_metrics,
            hst_bytes,
            cal_stats,
            cal_hst,
            threshold,
            episodes,
            n_scored,
            drift,
            feedback,
            verdicts,
            gaps,
            stale_sent,
            drift_epoch,
            held,
            held_against,
        ) = snap
        det = cls(entity, cfg, with_features)
        det._frontier = frontier
        det._max_seen = max_seen
        det._buffer = [Event(entity, ts, metrics, eid) for ts, metrics, eid in buffer]
        det._held = [Event(entity, ts, metrics, eid) for ts, metrics, eid in held]
        det._held_against = int(held_against)
        det._verdicts = [(int(t), str(a), str(k), str(r)) for t, a, k, r in verdicts]
        det._last_ts = last_ts
        m = det._m
        m.features = EntityFeatures.restore(cfg.features, feats)
        m.hst_metrics = tuple(hst_metrics)
        if m.hst_metrics and cfg.model.combine != "stats":
            # (A savepoint of a stats-only run restored with trees starts them fresh.)
            structure, m.hst_perm = det._structure(m.hst_metrics)
            if hst_bytes is not None:
                m.hst = CompactHST.from_bytes(structure, cfg.model.hst_window, hst_bytes)
            else:
                m.hst = CompactHST(structure, cfg.model.hst_window)
        m.cal_stats.restore(cal_stats)
        m.cal_hst.restore(cal_hst)
        m.threshold.restore(threshold)
        m.episodes.restore(episodes)
        m.n_scored = n_scored
        m.feedback.restore(feedback)
        det._gaps = InterArrival.restore(cfg.staleness.gap_samples, gaps)
        det._stale_sent = bool(stale_sent)
        det._drift_epoch = int(drift_epoch)
        if drift is not None and cfg.drift.enabled:
            try:
                m.drift = DriftMonitor.restore(cfg.drift, drift)
            except ValueError:
                # The drift layout changed with the configuration: start a new reference.
                m.drift = DriftMonitor(cfg.drift, [*(x for x in m.hst_metrics if x != SCORE), SCORE])
        return det


def _unplaceable(v: Verdict) -> dict[str, Any]:
    raw = {"alert_id": v.alert_id, "entity": v.entity, "verdict": v.verdict, "reason": v.reason}
    return DeadLetter(
        UNPLACEABLE_VERDICT,
        "ts",
        json.dumps(raw, sort_keys=True),
        "a verdict without ts for an entity with no events yet cannot be placed in event time",
    ).to_dict()


def _noise_floor(
    wkeys: _WindowKeys,
    values: dict[str, float],
    ready: dict[str, bool],
    frac: float,
) -> float:
    """``frac`` times the std of the metric's longest ready window (0 when none is ready).

    A short window's std comes from a handful of events and is often far too small: a z
    against it alone fires on noise. Its z is therefore taken against at least a share of the
    long-run noise level. ``wkeys``: the metric's window keys (:meth:`EntityDetector._keys_of`).
    """
    best_len = -1
    std = 0.0
    for key, _mean_key, std_key, length in wkeys:
        if length > best_len and ready.get(key, False):
            s = values[std_key]
            if s == s:
                best_len = length
                std = s
    return frac * std


def _z(x: float, mean: float, std: float, noise_floor: float = 0.0) -> float:
    """``(x - mean) / std`` with the std floored, so a change from a flat line still shows."""
    floor = 1e-3 * abs(mean) + 1e-9
    if noise_floor > floor:
        floor = noise_floor
    s = std if std == std and std > floor else floor
    z = (x - mean) / s
    if z > _Z_CAP:
        return _Z_CAP
    if z < -_Z_CAP:
        return -_Z_CAP
    return z


# A compiled copy of this file (scripts/build_native.py, mypyc) when one was built from these
# very bytes (udfs/core/native.py): the same code, fewer instructions. Only the classes below
# are taken from it; configuration classes stay pure (they travel pickled with the operator).
if __name__ == "udfs.core.detector":
    from udfs.core.native import bind

    bind(globals(), __file__, "detector")
