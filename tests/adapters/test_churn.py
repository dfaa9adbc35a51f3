"""State under churn: 100,000 entities that each appear briefly leave no state behind.

Each entity sends one event and is never seen again (think short-lived containers or
one-off card numbers); ``detector.lateness.idle_ttl_ms`` is one minute of event time, and
entities arrive ten per second. So at any moment about 600 entities are younger than the TTL;
every other entity's state must be gone.

1. The operator, driven like Flink drives it (fakes of keyed state and event-time timers, as
   in ``tests/adapters/test_operator.py``), over 20,000 such entities: the number of keys holding state never
   exceeds the entities active within the TTL, every entity is scored exactly once, and once
   the watermark passes the last entity's TTL no state and no timer is left.
2. The real job on a local MiniCluster with checkpoints (hashmap backend, full snapshots):
   the size of every checkpoint of the detect operator, read from Flink's REST API while the
   100,000 entities stream through, stays at what the entities active within the TTL hold,
   a small fraction of what all the entities seen so far would (their state is ~3.5 KB
   each: ~350 MB for 100,000).
"""

from __future__ import annotations

import heapq
import json
import random
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from job.config import load_config
from state.codec import encode
from tests.fakes import Backend, FakeContext, FakeRuntimeContext, FakeTimerService
from udfs.core.detector import EntityDetector
from udfs.core.events import Event
from udfs.detect import DetectAnomalies
from udfs.parse import detect_input
from udfs.tags import SCORES_TAG

T0 = 1_767_225_600_000
ENTITIES = 100_000
STEP_MS = 100  # a new entity every 100 ms of event time
TTL_MS = 60_000
BOUND_MS = 1_000
# A light detector: the subject is the state's lifecycle, not detection.
LIGHT = [
    "detector.features.windows=[{name: 1m, length_ms: 60000, buckets: 4}]",
    "detector.features.ratio_pairs=[]",
    "detector.features.robust_windows=[]",
    "detector.model.hst_trees=1",
    "detector.model.hst_height=1",
    "detector.model.hst_window=10",
    f"detector.lateness.idle_ttl_ms={TTL_MS}",
    f"detector.lateness.max_out_of_orderness_ms={BOUND_MS}",
]
# Entities younger than the TTL behind the watermark, plus the out-of-orderness bound.
WATERMARK_EVERY = 10  # the fake's watermark cadence (events)
ACTIVE = (TTL_MS + BOUND_MS) // STEP_MS + WATERMARK_EVERY + 2
# The operator test needs no JVM; a fifth of the entities keeps it near 10 s (the bound it
# checks does not depend on how many entities pass, only on how many are active at once).
OPERATOR_ENTITIES = 20_000


def churn_events(n: int = ENTITIES, seed: int = 5) -> list[Event]:
    rng = random.Random(seed)
    return [
        Event(f"u{i:06d}", T0 + i * STEP_MS, {"v": round(rng.gauss(10, 1), 3)}) for i in range(n)
    ]


def state_bytes_per_entity() -> int:
    """The encoded detector state of an entity that sent one event."""
    det = EntityDetector("u000000", load_config(None, LIGHT).detector)
    det.on_event(churn_events(1)[0])
    det.flush()
    return len(encode(det.snapshot()))


# -- 1. the operator with fakes, at full scale ---------------------------------------------


class HeapTimers(FakeTimerService):
    """Flink's timer service (one timer per key and timestamp) with a heap of due times."""

    def __init__(self, backend: Backend, heap: list[tuple[int, str]]) -> None:
        super().__init__(backend)
        self._heap = heap

    def register_event_time_timer(self, ts: int) -> None:
        super().register_event_time_timer(ts)
        assert self._b.key is not None
        heapq.heappush(self._heap, (ts, self._b.key))


class Ctx(FakeContext):
    def __init__(self, backend: Backend, timestamp: int, heap: list[tuple[int, str]]) -> None:
        super().__init__(backend, timestamp)
        self._heap = heap

    def timer_service(self) -> HeapTimers:
        return HeapTimers(self._b, self._heap)


def test_operator_keeps_state_only_for_entities_within_the_ttl() -> None:
    cfg = load_config(None, LIGHT).detector
    b = Backend()
    heap: list[tuple[int, str]] = []
    fn = DetectAnomalies(cfg, emit_scores=True)
    fn.open(FakeRuntimeContext(b))
    scored: set[str] = set()
    max_keys = 0

    def collect(produced: Any) -> None:
        for item in produced:
            if isinstance(item, tuple) and item[0] is SCORES_TAG:
                entity = json.loads(item[1])["entity"]
                assert entity not in scored, f"{entity} scored twice"
                scored.add(entity)

    def advance(watermark: int) -> None:
        b.watermark = watermark
        while heap and heap[0][0] <= watermark:
            ts, key = heapq.heappop(heap)
            if ts not in b.timers.get(key, set()):
                continue  # deleted (or already fired)
            b.timers[key].discard(ts)
            b.key = key
            collect(fn.on_timer(ts, Ctx(b, ts, heap)))

    for i, ev in enumerate(churn_events(OPERATOR_ENTITIES)):
        b.key = ev.entity
        collect(fn.process_element(detect_input(ev), Ctx(b, ev.ts_ms, heap)))
        if i % WATERMARK_EVERY == 0:  # periodic watermarks, as Flink emits them
            advance(ev.ts_ms - BOUND_MS - 1)
        max_keys = max(max_keys, len(b.state))
    last = T0 + (OPERATOR_ENTITIES - 1) * STEP_MS
    assert len(b.state) <= ACTIVE
    advance(last + TTL_MS)
    assert b.state == {}, f"{len(b.state)} entities kept state after their TTL"
    assert not any(b.timers.values()), "timers left behind"
    assert len(scored) == OPERATOR_ENTITIES
    assert 100 < max_keys <= ACTIVE, max_keys


# -- 2. the real job on a MiniCluster: checkpoint sizes ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CheckpointWatcher(threading.Thread):
    """Polls the MiniCluster's REST API: for every completed checkpoint, the detect vertex's
    state size and how many events had been scored by then (lines of the collected
    ``scores.jsonl``, a lower bound: the collect sink and the file buffer lag behind).

    Only endpoints that do not make the JobManager fetch metrics are used (overview, plan,
    checkpoints): fetching them calls the operator's Python gauges from Flink's metrics
    thread, which crashed a TaskManager when it raced with the operator's close."""

    def __init__(self, rest_url: str, scores: Path) -> None:
        super().__init__(daemon=True)
        self.rest_url = rest_url
        self.scores = scores
        self.samples: dict[int, tuple[int, int]] = {}  # checkpoint id -> (state size, scored)
        self.stop = threading.Event()
        self.errors: list[str] = []

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.rest_url}{path}", timeout=5) as r:
            return json.load(r)

    def scored(self) -> int:
        try:
            with open(self.scores, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return 0

    def run(self) -> None:
        job_id = detect_id = None
        while not self.stop.is_set():
            try:
                if job_id is None:
                    jobs = self.get("/jobs/overview")["jobs"]
                    job_id = jobs[0]["jid"] if jobs else None
                if job_id is not None and detect_id is None:
                    nodes = self.get(f"/jobs/{job_id}/plan")["plan"]["nodes"]
                    [detect_id] = [n["id"] for n in nodes if "detect" in n["description"]]
                if detect_id is not None:
                    scored = self.scored()
                    latest = self.get(f"/jobs/{job_id}/checkpoints")["latest"]["completed"]
                    if latest and latest["id"] not in self.samples:
                        detail = self.get(f"/jobs/{job_id}/checkpoints/details/{latest['id']}")
                        size = detail["tasks"][detect_id]["state_size"]
                        self.samples[latest["id"]] = (size, scored)
            except Exception as exc:  # noqa: BLE001 - the cluster starts and stops under us
                self.errors.append(repr(exc))
            self.stop.wait(0.3)


@pytest.mark.minicluster
def test_checkpointed_state_stays_bounded_while_100k_entities_churn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source

    per_entity = state_bytes_per_entity()
    src = tmp_path / "churn.jsonl"
    src.write_text("".join(ev.to_json() + "\n" for ev in churn_events()))
    cfg = load_config(
        None, [*LIGHT, "execution.checkpoint_interval_ms=500", "sink.emit_scores=true"]
    )
    port = _free_port()
    extra = {
        # the MiniCluster's REST API on a known port (it is random otherwise)
        "rest.port": str(port),
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "state.backend.type": "hashmap",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": (tmp_path / "checkpoints").as_uri(),
    }
    original = StreamExecutionEnvironment.get_execution_environment

    def with_extra(configuration: Any = None) -> Any:
        for key, value in extra.items():
            configuration.set_string(key, value)
        return original(configuration)

    monkeypatch.setattr(StreamExecutionEnvironment, "get_execution_environment", with_extra)
    env = create_environment(cfg)
    outputs = build_pipeline(env, cfg, file_source(env, str(src)))
    watcher = CheckpointWatcher(f"http://127.0.0.1:{port}", tmp_path / "out" / "scores.jsonl")
    watcher.start()
    t0 = time.monotonic()
    try:
        collect_to_files(outputs, tmp_path / "out", "churn")
    finally:
        watcher.stop.set()
        watcher.join(10)
    elapsed = time.monotonic() - t0

    assert watcher.scored() == ENTITIES  # every entity scored once
    # Checkpoints taken once tens of thousands of entities had gone through the operator
    # (30,000: a checkpoint holds up to ~1,300-2,100 entities' worth when the watermark lags,
    # and the last assertion compares with 10 times that; at 20,000 seen, a fast run failed a
    # 20 times bound holding 1,178 with 20,850 seen, which says nothing about cleanup).
    late = {cid: s for cid, s in watcher.samples.items() if s[1] >= 30_000}
    assert len(late) >= 3, (watcher.samples, watcher.errors[-3:])
    worst_id, (worst, read) = max(late.items(), key=lambda kv: kv[1][0])
    report = {
        "entities": ENTITIES,
        "seconds": round(elapsed, 1),
        "state_bytes_per_entity": per_entity,
        "checkpoints_sampled": len(watcher.samples),
        "largest_late_checkpoint": {"id": worst_id, "detect_state_size": worst,
                                    "events_scored_by_then": read,
                                    "entities_worth_of_state": round(worst / per_entity)},
        "without_cleanup_it_would_hold_at_least": read * per_entity,
    }
    print("\nchurn: " + json.dumps(report))
    # The entities active within the TTL, plus those the watermark lags behind (it is
    # emitted every 200 ms of processing time) and the keys' and timers' overhead; never the
    # entities seen so far (measured: ~1,300 entities' worth at 51,500 events, 5 MB vs 196 MB).
    assert worst <= 5 * ACTIVE * per_entity, report
    # A tenth of what it would hold without cleanup: the entities the watermark lags behind
    # grow with the job's speed (it is emitted every 200 ms of processing time), and with the
    # compiled window features a checkpoint held 2,062 entities' worth at 31,400 seen.
    assert worst * 10 < read * per_entity, report
