"""The Flink adapter (udfs.detect.DetectAnomalies) driven like Flink drives it, with fakes and
no JVM: keyed ValueState, event-time timers (one per key and timestamp, as Flink keeps them)
and a bounded-out-of-orderness watermark. Its outputs equal the replay oracle's, buffered
events leave on the release timer, and the idle timer clears the entity's state."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
from typing import Any

import pytest

from tests.fakes import (
    BOUND,
    CFG,
    LONG_MIN,
    SEC,
    T0,
    TTL,
    Backend,
    FakeContext,
    FakeRuntimeContext,
    Harness,
    normalised,
    per_entity_and_kind,
    shuffle_within_bound,
    stream,
)
from udfs.core.events import Event, format_timestamp
from udfs.core.feedback import Verdict
from udfs.core.maintenance import MaintenanceConfig, MaintenanceWindow
from udfs.core.replay import replay
from udfs.detect import DetectAnomalies, load_detector, stored_size
from udfs.detect_live import DetectAnomaliesLive
from udfs.metrics import SAMPLE_EVERY, SAMPLE_WRITES_EVERY
from udfs.parse import detect_input
from udfs.tags import DEAD_LETTER_TAG


def test_state_descriptor_is_a_value_state_with_a_ttl_backstop() -> None:
    h = Harness()
    [desc] = h.b.descriptors
    assert desc.name == "entity-detector"
    assert desc._ttl_config is not None


@pytest.mark.parametrize("cache_size", [4096, 1])
def test_operator_outputs_equal_the_replay_oracle(cache_size: int) -> None:
    # A one-entity cache: the three entities keep missing it, so their events are deferred
    # to the next load (their release timer or next input) and must still give every record.
    rng = random.Random(11)
    a = stream(400, "a", seed=1, spike=300)
    b = stream(400, "b", seed=2, start=T0 + 250, spike=320)
    # c goes quiet for longer than the idle TTL, then comes back.
    c = stream(150, "c", seed=3, start=T0 + 500) + stream(
        150, "c", seed=4, start=T0 + 500 + 149 * SEC + TTL + 7 * SEC
    )
    merged = sorted(
        shuffle_within_bound(a, rng) + shuffle_within_bound(b, rng) + shuffle_within_bound(c, rng),
        key=lambda e: e.ts_ms + rng.uniform(0, BOUND),
    )
    # A straggler behind its entity's newest event by more than the bound: late in both.
    merged.insert(200, Event("a", T0 + 60 * SEC, {"cpu": 1.0, "mem": 1.0}))

    h = Harness(cache_size=cache_size)
    deferred = new_deferred = 0
    for i, ev in enumerate(merged):
        h.element(ev, watermark=i % 3 == 0)  # watermarks now and then, as Flink emits them
        raw = h.b.state.get(("entity-detector", ev.entity))
        stored = None if raw is None else pickle.loads(raw)
        deferred += stored is not None and len(stored) > 6 and bool(stored[6])
        new_deferred += stored is not None and stored[3] is None  # no detector built yet
    h.end_of_input()
    assert (deferred > 100) == (cache_size == 1)
    assert (new_deferred > 0) == (cache_size == 1)
    # Every entity was cleared at the end: each was counted active once, deferred or not.
    assert h.ctx.metrics["anomaly.active_entities"].count == 0
    assert h.ctx.metrics["anomaly.state_bytes_held"].count == 0

    expected = [normalised(kind, rec) for kind, rec in replay(merged, CFG)]
    assert any(kind == "alert" for kind, _ in expected)
    assert any(kind == "late" for kind, _ in expected)
    assert per_entity_and_kind(h.out) == per_entity_and_kind(expected)
    # A record of an event late by its entity's own data is measured against that, not the
    # watermark: the same whenever the watermark came (a restore changes its timing).
    assert [r for k, r in h.out if k == "late"] == [r for k, r in expected if k == "late"]


def test_release_timer_emits_buffered_events_when_the_watermark_passes_them() -> None:
    h = Harness()
    events = stream(20, "a", seed=1)
    for ev in events:
        h.element(ev)
    # Newest 19 s: events 14..19 s are still buffered (within the 5 s bound).
    scored = [r["ts_ms"] for k, r in h.out if k == "score"]
    assert scored == [e.ts_ms for e in events[:14]]
    assert min(h.timers("a")) == T0 + 14 * SEC  # the release timer

    got = h.advance(T0 + 16 * SEC)  # no further event, only the watermark
    assert [r["ts_ms"] for k, r in got if k == "score"] == [
        T0 + 14 * SEC,
        T0 + 15 * SEC,
        T0 + 16 * SEC,
    ]
    assert min(h.timers("a")) == T0 + 17 * SEC

    got = h.advance(T0 + 19 * SEC)
    assert [r["ts_ms"] for k, r in got if k == "score"] == [T0 + s * SEC for s in (17, 18, 19)]
    det = load_detector("a", CFG, h.stored("a"))  # its snapshot, then its journal replayed
    assert det.earliest_buffered_ms() is None  # nothing left in the entity's buffer
    # No release timer is left, only the watch timer: the stale deadline armed by the first
    # gap (1 s; silence threshold min(max(5 min, 20 s), TTL / 2) = 5 min), moved only earlier.
    [watch] = h.timers("a")
    assert watch == T0 + SEC + TTL // 2


def test_an_in_order_entity_costs_no_timer_call_per_event() -> None:
    """Each event waits in the buffer for the entity's next one; the release timer is not
    moved to it (only earlier), and the watch timer only earlier: between watermarks an
    in-order entity makes no timer call. When the watermark passes, the buffered events
    are released and the outputs equal the replay."""
    events = stream(200, "a", seed=3)
    h = Harness()
    h.element(events[0], watermark=False)
    assert h.b.timer_calls == 2  # the first event: a release and a watch timer
    for ev in events[1:10]:  # the watch timer moves to the stale deadline once it is known
        h.element(ev, watermark=False)
    calls = h.b.timer_calls
    for ev in events[10:]:
        h.element(ev, watermark=False)
    assert h.b.timer_calls == calls
    h.end_of_input()
    expected = [normalised(kind, rec) for kind, rec in replay(events, CFG)]
    assert per_entity_and_kind(h.out) == per_entity_and_kind(expected)


def test_idle_timer_clears_state_and_leaves_no_timer() -> None:
    h = Harness()
    events = stream(300, "a", seed=1, jitter=True)  # timestamps off any regular grid
    for ev in events:
        h.element(ev)
    last = events[-1].ts_ms
    h.advance(last + TTL - 1)
    assert h.stored("a") is not None  # not idle long enough yet
    h.advance(last + TTL)
    assert h.stored("a") is None
    assert h.timers("a") == set()
    assert len([1 for k, _ in h.out if k == "score"]) == 300


def test_entity_returning_after_its_state_was_cleared_starts_fresh() -> None:
    h = Harness()
    early = stream(100, "a", seed=1, jitter=True)
    for ev in early:
        h.element(ev)
    h.advance(early[-1].ts_ms + TTL)
    assert h.stored("a") is None
    later = stream(100, "a", seed=2, start=early[-1].ts_ms + TTL + 10 * SEC)
    start = len(h.out)
    for ev in later:
        h.element(ev)
    h.end_of_input()
    fresh = [normalised(k, r) for k, r in replay(later, CFG)]
    assert h.out[start:] == fresh
    assert h.stored("a") is None and h.timers("a") == set()


def test_end_of_input_releases_everything_and_clears_every_entity() -> None:
    h = Harness()
    for ev in stream(50, "a", seed=1, jitter=True) + stream(50, "b", seed=2, jitter=True):
        h.element(ev, watermark=False)
    h.end_of_input()
    assert len([1 for k, _ in h.out if k == "score"]) == 100
    assert h.b.state == {}
    assert all(not timers for timers in h.b.timers.values())


def test_at_most_two_timers_per_entity_over_a_long_shuffled_run() -> None:
    rng = random.Random(3)
    h = Harness()
    events = shuffle_within_bound(stream(900, "a", seed=5, jitter=True, spike=500), rng)
    for i, ev in enumerate(events):
        h.element(ev, watermark=i % 4 == 0)
    h.end_of_input()
    assert h.max_timers_seen == 2  # the harness asserts <= 2 after every callback


def test_idle_timer_clears_state_on_a_regular_cadence() -> None:
    h = Harness()
    events = stream(700, "a", seed=1)  # exactly 1 s apart: first ts + TTL is an event's ts
    for ev in events:
        h.element(ev)
    h.advance(events[-1].ts_ms + TTL)
    assert h.stored("a") is None
    assert h.timers("a") == set()


def test_metrics_count_what_the_operator_emitted_and_the_entities_it_holds() -> None:
    rng = random.Random(5)
    a = stream(400, "a", seed=1, spike=300)
    b = stream(200, "b", seed=2, start=T0 + 250)
    merged = sorted(a + b, key=lambda e: e.ts_ms + rng.uniform(0, BOUND))
    merged.insert(150, Event("a", T0 + 10 * SEC, {"cpu": 1.0, "mem": 1.0}))  # late
    h = Harness()
    for ev in merged[:300]:
        h.element(ev)
    m = h.ctx.metrics
    assert m["anomaly.active_entities"].count == 2
    assert min(m["anomaly.state_bytes"].values) > 500  # bytes (compressed), not a count
    for ev in merged[300:]:
        h.element(ev)
    h.end_of_input()
    kinds = [kind for kind, _ in h.out]
    opened = [rec["severity"] for kind, rec in h.out if kind == "alert" and rec["kind"] == "open"]
    assert opened, "the spike must open an alert for this to matter"
    assert m["anomaly.events"].count == kinds.count("score")
    # The distributions are sampled: the 1st, 17th, 33rd, ... score.
    assert len(m["anomaly.lag_ms"].values) == -(-kinds.count("score") // SAMPLE_EVERY)
    assert m["anomaly.late"].count == kinds.count("late") == 1
    assert m["anomaly.alert_records"].count == kinds.count("alert")
    for sev in ("info", "warning", "critical"):
        assert m[f"anomaly.alerts_{sev}"].count == opened.count(sev)
    # End of input: every entity expired and cleared.
    assert m["anomaly.active_entities"].count == 0
    assert m["anomaly.entities_expired"].count == 2


def test_parse_counts_dead_letters_in_total_and_by_reason() -> None:
    from udfs.core.events import ParseConfig
    from udfs.parse import ParseEvents

    fn = ParseEvents(ParseConfig())
    ctx = FakeRuntimeContext(Backend())
    fn.open(ctx)
    lines = [
        "{bad",
        "{also bad",
        '{"entity": "", "ts": 1767225600000, "metrics": {"a": 1}}',
        '{"entity": "x", "ts": 1767225600000, "metrics": {"a": 1}}',
    ]
    outs = [list(fn.process_element(line, None)) for line in lines]
    assert [len(o) for o in outs] == [1, 1, 1, 1]
    m = ctx.metrics
    assert m["anomaly.dead_letters"].count == 3
    assert m["anomaly.dead_letters_invalid_json"].count == 2
    assert m["anomaly.dead_letters_missing_entity"].count == 1


def test_detect_dead_letters_bad_lines_and_lines_keyed_to_another_entity() -> None:
    """The detect operator parses its lines: a bad one is a dead letter with the parser's
    reason, and so is one whose entity the parser reads differently from the key Flink gave
    it (it must not reach that key's state); neither touches state."""
    h = Harness()
    good = Event("a", T0, {"cpu": 1.0})
    lines = [
        ("", "{bad"),
        ("a", '{"entity": "a", "ts": 1767225600000, "metrics": {"cpu": "high"}}'),
        ("b", good.to_json()),  # keyed as b, reads as a
    ]
    dead = []
    for key, line in lines:
        h.b.key = key
        for item in h.fn.process_element((key, line), FakeContext(h.b, 0)):
            tag, payload = item
            assert tag is DEAD_LETTER_TAG
            dead.append(json.loads(payload))
    assert [d["reason"] for d in dead] == ["invalid_json", "non_numeric_metric", "ambiguous_entity"]
    assert dead[2]["raw"] == good.to_json() and "'b'" in dead[2]["detail"]
    assert h.b.state == {} and h.b.timers == {} and h.b.writes == []
    m = h.ctx.metrics
    assert m["anomaly.dead_letters"].count == 3
    assert m["anomaly.dead_letters_ambiguous_entity"].count == 1
    # The same line under its own key is an event: the entity's state is written.
    h.element(good)
    assert {key for _, key in h.b.state} == {"a"}


@pytest.mark.parametrize("every", [1, 16])
@pytest.mark.parametrize("max_lines", [3, 40])
def test_lines_grouped_between_watermarks_give_the_records_and_state_of_one_call_per_line(
    every: int, max_lines: int
) -> None:
    """The line batcher (udfs/jvm) hands the operator an entity's lines in a list, never
    across a watermark. Grouped so, events, verdicts (one for an entity that has no state),
    bad lines and lines keyed to another entity give the same records, in each entity's order,
    the same dead letters, and leave the same detectors as one call per line."""
    rng = random.Random(5)
    a = stream(300, "a", seed=1, spike=200)
    b = stream(300, "b", seed=2, start=T0 + 250, spike=220)
    merged = sorted(
        shuffle_within_bound(a, rng) + shuffle_within_bound(b, rng),
        key=lambda e: e.ts_ms + rng.uniform(0, BOUND),
    )
    items: list[tuple[str, str]] = [detect_input(ev) for ev in merged]
    items.insert(120, detect_input(Verdict("x-1", "ghost", "false_positive", "", T0 + 9 * SEC)))
    items.insert(121, detect_input(Verdict("a-1", "a", "false_positive", "", T0 + 100 * SEC)))
    items.insert(122, detect_input(Event("ghost", T0 + 130 * SEC, {"cpu": 1.0})))
    items.insert(200, ("a", '{"entity": "a", "ts": 1767225600000, "metrics": {"cpu": "x"}}'))
    items.insert(201, ("b", merged[0].to_json()))  # keyed as b, reads as a
    items.insert(260, ("", "{bad"))
    marks = {i for i in range(len(items)) if rng.random() < 0.15}

    one = Harness(snapshot_every=every)
    grouped = Harness(snapshot_every=every)
    held: dict[str, list[str]] = {}
    count = 0
    max_ts = LONG_MIN

    def flush() -> None:
        nonlocal count
        for key, lines in held.items():
            grouped.group(key, lines)
        held.clear()
        count = 0

    for i, (key, line) in enumerate(items):
        one.b.key = key
        one._collect(list(one.fn.process_element((key, line), FakeContext(one.b, 0))))
        held.setdefault(key, []).append(line)
        count += 1
        if count >= max_lines:
            flush()
        ts = json.loads(line).get("ts") if line.startswith("{\"") else None
        if isinstance(ts, int):
            max_ts = max(max_ts, ts)
        if i in marks:
            flush()  # everything held leaves before the watermark
            one.advance(max_ts - BOUND - 1)
            grouped.advance(max_ts - BOUND - 1)
    flush()
    assert len(grouped.out) == len(one.out)

    def records(h: Harness) -> dict[tuple[str, str], list[Any]]:
        return per_entity_and_kind([(k, r) for k, r in h.out if k != "dead_letter"])

    assert records(grouped) == records(one)
    assert sorted(r["raw"] for k, r in grouped.out if k == "dead_letter") == sorted(
        r["raw"] for k, r in one.out if k == "dead_letter"
    )
    assert {k for k, _ in one.out} >= {"alert", "score", "dead_letter"}
    keys = {key for _, key in one.b.state}
    assert keys == {key for _, key in grouped.b.state} == {"a", "b", "ghost"}
    # (The timers may differ: one call moves them once, and a timer is moved only earlier;
    # when one fires early it is registered again, which changes when records leave, not
    # which: see the end of input below.)
    for key in keys:
        snaps = [load_detector(key, CFG, h.stored(key)).snapshot() for h in (one, grouped)]
        assert snaps[0] == snaps[1]
    assert len(grouped.b.writes) < len(one.b.writes)  # one write per group, not per line
    one.end_of_input()
    grouped.end_of_input()
    assert records(grouped) == records(one)


@pytest.mark.parametrize("every", [1, 4, 16])
@pytest.mark.parametrize("cut", [150, 151, 157])
def test_a_fresh_operator_instance_restores_from_state_not_from_its_cache(
    every: int, cut: int
) -> None:
    """The read cache never stands in for the state: a restored instance (new nonce, empty
    cache) continues exactly like the instance that kept running, whatever part of the
    journal (events and timers) it has to replay."""
    a = stream(300, "a", seed=1, spike=250, jitter=True)
    whole = Harness(snapshot_every=every)
    for ev in a:
        whole.element(ev)
    whole.end_of_input()

    first = Harness(snapshot_every=every)
    for ev in a[:cut]:
        first.element(ev)
    journal = first.stored("a")[4]
    assert len(journal) == (0 if every == 1 else len(journal)) < every
    second = Harness(snapshot_every=every)
    second.restore_from(first)
    for ev in a[cut:]:
        second.element(ev)
    second.end_of_input()
    assert second.out == whole.out


@pytest.mark.parametrize("cut", [257, 259])
def test_a_restart_under_another_configuration_replays_the_journal_under_the_old_one(
    cut: int,
) -> None:
    """A job restarted from a savepoint with a new configuration (here a maintenance window
    over a spike whose alert already went out) goes on exactly as if the state held a full
    snapshot: the journal is replayed under the configuration it was written under, and the
    new one applies from the next event. Replayed under the new one, the open episode would
    vanish and its alert would never be resolved."""
    a = stream(300, "a", seed=1, spike=250)
    spike = a[250].ts_ms
    window = MaintenanceWindow("*", format_timestamp(spike - 500), format_timestamp(spike + 3 * SEC))
    changed = dataclasses.replace(CFG, maintenance=MaintenanceConfig(windows=(window,)))

    def restarted(every: int) -> list[tuple[str, str]]:
        first = Harness(CFG, snapshot_every=every)
        for ev in a[:cut]:
            first.element(ev)
        assert any(k == "alert" and r["kind"] == "open" for k, r in first.out)
        if every > 1:
            assert first.stored("a")[4], "the journal must hold events for this to matter"
        second = Harness(changed, snapshot_every=every)
        second.restore_from(first)
        for ev in a[cut:]:
            second.element(ev)
        second.end_of_input()
        return [(r["alert_id"], r["kind"]) for k, r in second.out if k == "alert"]

    full = restarted(1)
    assert [kind for _, kind in full] == ["open", "resolved"]
    assert restarted(16) == full


def test_every_write_holds_the_detector_that_produced_the_outputs_before_it() -> None:
    """Snapshot plus journal: the full snapshot is encoded on every 4th write of the entity,
    the writes between append the event or the timer's watermark, and at every write the
    stored state, decoded and replayed, is the very detector the operator went on with."""
    h = Harness(snapshot_every=4)
    events = shuffle_within_bound(stream(120, "a", seed=5, jitter=True, spike=100), random.Random(2))
    kinds: set[type] = set()
    for i, ev in enumerate(events):
        h.element(ev)
        if i % 10 == 9:  # the watermark passes everything: the release timer fires
            h.advance(h.max_ts)
        stored = h.stored("a")
        assert len(stored[4]) < 4
        kinds |= {type(e) for e in stored[4]}
        live = h.fn._cache["a"][1]
        assert load_detector("a", CFG, stored).snapshot() == live.snapshot()
    assert kinds == {bytes, int}  # events (udfs.parse.handoff payloads) and watermarks
    lengths = [len(w[4]) for w in h.b.writes]
    assert lengths[:9] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    # A read that misses the cache (a new instance) writes a full snapshot.
    if h.stored("a")[4] == ():
        h.element(stream(1, "a", seed=6, start=h.max_ts + SEC)[0])  # one journaled write
    assert h.stored("a")[4] != ()
    second = Harness(snapshot_every=4)
    second.restore_from(h)
    second.element(stream(1, "a", seed=7, start=second.max_ts + SEC)[0])
    assert second.stored("a")[4] == ()


def test_a_journal_of_json_payloads_from_an_earlier_version_restores_the_same_detector() -> None:
    """Before payloads were pickled, the journal held each event and verdict as the JSON
    the parser shipped: state in a savepoint of that version replays to the same
    detector as the same journal in today's form."""
    h = Harness(snapshot_every=8)
    events = stream(30, "a", seed=3, spike=20)
    for ev in events[:-1]:
        h.element(ev, watermark=False)
    v = Verdict("a:0", "a", "false_positive", "test", events[-2].ts_ms)
    h.verdict(v)
    h.element(events[-1], watermark=False)
    stored = h.stored("a")
    journal = stored[4]
    decoded = [pickle.loads(e) for e in journal if isinstance(e, bytes)]
    assert any(isinstance(e, tuple) for e in decoded) and any(isinstance(e, dict) for e in decoded)

    def as_json(entry: Any) -> Any:
        if isinstance(entry, int):
            return entry
        obj = pickle.loads(entry)
        if isinstance(obj, tuple):
            ts_ms, metrics, eid = obj
            return Event("a", ts_ms, metrics, eid).to_json()
        return json.dumps(obj)

    old = (*stored[:4], tuple(as_json(e) for e in journal), *stored[5:])
    assert all(isinstance(e, (str, int)) for e in old[4])
    now = load_detector("a", CFG, stored)
    assert load_detector("a", CFG, old).snapshot() == now.snapshot()
    assert now.snapshot() == h.fn._cache["a"][1].snapshot()


def test_a_cache_hit_reads_no_state_and_the_state_ttl_still_decides(monkeypatch: Any) -> None:
    """Within one instance only the operator writes an entity's state, so what it last wrote
    (cached) is the state: a hit reads nothing. The processing-time TTL backstop is the one
    other change: an entry older than the TTL is not used, the state decides."""
    import udfs.detect

    clock = [1000.0]
    monkeypatch.setattr(udfs.detect.time, "monotonic", lambda: clock[0])
    h = Harness()
    a = stream(40, "a", seed=1)
    for ev in a[:20]:
        h.element(ev)
    reads = h.b.reads
    for ev in a[20:30]:
        h.element(ev)
    assert h.b.reads == reads  # events and timer callbacks of a cached entity: no read
    active = h.ctx.metrics["anomaly.active_entities"]
    assert active.count == 1
    # Flink's TTL expires a's value (not written for state_ttl_ms)...
    h.b.state.pop(("entity-detector", "a"))
    h.b.timers.pop("a")  # (its timers would fire later and find the state: not the point here)
    clock[0] += 7 * 86_400.0
    h.element(a[30])
    assert h.b.reads == reads + 1
    assert active.count == 2  # ... and the operator starts it afresh, as the state says
    assert h.fn._cache["a"][1].max_seen_ms == a[30].ts_ms


def test_the_live_operator_keeps_no_journal() -> None:
    # A journal replayed after a live change would re-decide its events under the new
    # configuration; the live operator writes the full state on every event.
    with pytest.raises(RuntimeError, match="snapshot_every=1"):
        DetectAnomalies(CFG, snapshot_every=16).set_config(CFG)
    assert DetectAnomaliesLive(CFG)._inner._snapshot_every == 1


def test_watch_timer_reports_a_silent_entity_while_the_others_report() -> None:
    """Entity b stops for 8 minutes while a keeps reporting: the watch timer reports b stale
    as soon as the watermark passes its deadline (before b returns), once; b's return is
    reported; everything equals the replay, with at most two timers per entity."""
    a = stream(900, "a", seed=1)
    b_early = stream(100, "b", seed=2, start=T0 + 300)
    b_late = stream(100, "b", seed=3, start=T0 + 300 + 99 * SEC + 8 * 60 * SEC)
    merged = sorted(a + b_early + b_late, key=lambda e: e.ts_ms)
    h = Harness()
    deadline = b_early[-1].ts_ms + TTL // 2  # 1 s cadence: min(max(5 min, 20 s), TTL / 2)
    reported_at = None
    for ev in merged:
        got = h.element(ev)
        if reported_at is None and any(r.get("check") == "stale_entity" for _, r in got):
            reported_at = h.b.watermark
    assert reported_at is not None and deadline <= reported_at < b_late[0].ts_ms
    h.end_of_input()
    assert h.max_timers_seen <= 2
    health = [(r["entity"], r["check"], r["ts_ms"]) for k, r in h.out if k == "drift"]
    assert health[:2] == [
        ("b", "stale_entity", deadline),
        ("b", "entity_returned", b_late[0].ts_ms),
    ]
    expected = [normalised(kind, rec) for kind, rec in replay(merged, CFG)]
    assert per_entity_and_kind(h.out) == per_entity_and_kind(expected)


def held_bytes(h: Harness, entities: tuple[str, ...] = ("a", "b")) -> int:
    """Encoded detector bytes in the keyed state of ``entities``."""
    return sum(stored_size(h.stored(e)) for e in entities if h.stored(e) is not None)


def test_active_entities_and_state_bytes_follow_what_the_operator_stores_and_clears() -> None:
    """active_entities and state_bytes_held are counters moved both ways (no gauge): +1 (and
    its bytes) when an entity's state is created, the change of size on every write, -1 (and
    its bytes) when its idle timer clears it; state_bytes is the size of every write."""
    h = Harness()
    m = h.ctx.metrics
    early = stream(30, "a", seed=1)
    for ev in early:
        h.element(ev)
        assert m["anomaly.state_bytes_held"].count == held_bytes(h)
    assert m["anomaly.active_entities"].count == 1
    h.element(stream(1, "b", seed=2, start=early[-1].ts_ms)[0])
    assert m["anomaly.active_entities"].count == 2
    assert m["anomaly.state_bytes_held"].count == held_bytes(h) > stored_size(h.stored("a"))
    h.advance(early[-1].ts_ms + TTL)  # both idle past the TTL: cleared
    assert h.stored("a") is None and h.stored("b") is None
    assert m["anomaly.active_entities"].count == 0
    assert m["anomaly.state_bytes_held"].count == 0
    assert m["anomaly.entities_expired"].count == 2
    # a's stale record (b had a single event: no cadence, never stale), counted as health.
    assert [r["check"] for k, r in h.out if k == "drift"] == ["stale_entity"]
    assert m["anomaly.health_records"].count == 1
    h.element(stream(1, "a", seed=3, start=early[-1].ts_ms + 2 * TTL)[0])
    assert m["anomaly.active_entities"].count == 1
    assert m["anomaly.state_bytes_held"].count == held_bytes(h) > 0
    # Every write (events and timer callbacks that keep the entity), its encoded size.
    sampled = [stored_size(w) for w in h.b.writes][::SAMPLE_WRITES_EVERY]
    assert m["anomaly.state_bytes"].values == sampled
    assert len(h.b.writes) > 31 and min(m["anomaly.state_bytes"].values) > 500


def test_active_entities_after_a_restore_counts_restored_entities_once_touched() -> None:
    first = Harness()
    for ev in stream(20, "a", seed=1) + stream(20, "b", seed=2, start=T0 + 100):
        first.element(ev, watermark=False)
    second = Harness()
    second.restore_from(first)  # the checkpointed keyed state and timers
    active = second.ctx.metrics["anomaly.active_entities"]
    held = second.ctx.metrics["anomaly.state_bytes_held"]
    assert active.count == 0
    second.element(stream(1, "a", seed=3, start=T0 + 20 * SEC)[0], watermark=False)
    assert active.count == 1  # a touched; b not yet
    assert held.count == held_bytes(second, ("a",))
    second.element(stream(1, "a", seed=4, start=T0 + 21 * SEC)[0], watermark=False)
    assert active.count == 1  # once
    assert held.count == held_bytes(second, ("a",))
    second.end_of_input()  # b's timers touch it, then both are cleared
    assert active.count == 0 and held.count == 0
    assert second.ctx.metrics["anomaly.entities_expired"].count == 2


def test_verdicts_reach_the_entity_detector_like_the_replay_and_a_verdict_only_entity_expires() -> None:
    events = stream(400, "a", seed=1, spike=300)
    fp = Verdict("a-early", "a", "false_positive", "known batch job", T0 + 200 * SEC + 500)
    stray = Verdict("x-1", "ghost", "false_positive", "", T0 + 10 * SEC)  # no events, ever
    h = Harness()
    for i, ev in enumerate(events):
        if i == 50:
            h.verdict(fp)
            h.verdict(stray)
            assert h.stored("ghost") is not None and h.timers("ghost")
        h.element(ev)
    h.end_of_input()
    expected = [normalised(k, r) for k, r in replay([*events[:50], fp, stray, *events[50:]], CFG)]
    assert per_entity_and_kind(h.out) == per_entity_and_kind(expected)
    # The verdict changed the thresholds from its ts on (compared with no verdict at all).
    plain = [normalised(k, r) for k, r in replay(events, CFG)]
    assert per_entity_and_kind(plain) != per_entity_and_kind(expected)
    assert h.stored("ghost") is None and not h.timers("ghost")
    assert h.ctx.metrics["anomaly.verdicts"].count == 2
