"""Latency at a paced rate, and checkpoints of many entities."""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyflink.datastream import MapFunction

from state.codec import decode, encode
from tools.bench.common import WITH_FEATURES
from tools.bench.flink import bench_config, bench_environment, discard, execute_job
from tools.bench.loops import operator_loop
from tools.bench.stats import percentiles
from tools.bench.streams import event_index, generate_events, write_lines
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import ParseConfig


class Pace(MapFunction):  # type: ignore[misc]
    """Lets records through at ``rate`` per second; records when each one left (wall clock)."""

    def __init__(self, rate: float, out_dir: str) -> None:
        self.rate = rate
        self.out_dir = out_dir
        self.sent: list[int] = []
        self.t0_ns = 0

    def map(self, value: str) -> str:
        if not self.sent:
            self.t0_ns = time.time_ns()
        due = self.t0_ns + int(len(self.sent) * 1e9 / self.rate)
        wait = due - time.time_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        self.sent.append(time.time_ns())
        return value

    def close(self) -> None:
        doc = {"t0_ns": self.t0_ns, "rate": self.rate, "sent_ns": self.sent}
        Path(self.out_dir, f"pace-{os.getpid()}-{id(self)}.json").write_text(json.dumps(doc))


class Arrivals(MapFunction):  # type: ignore[misc]
    """After detect: when each event's score record came out (wall clock), by event index."""

    def __init__(self, out_dir: str, entities: int, interval_ms: int) -> None:
        self.out_dir = out_dir
        self.entities = entities
        self.interval_ms = interval_ms
        self.seen: list[tuple[int, int]] = []

    def map(self, value: str) -> str:
        now = time.time_ns()
        rec = json.loads(value)
        i = event_index(
            rec["entity"], rec["ts_ms"], entities=self.entities, interval_ms=self.interval_ms
        )
        self.seen.append((i, now))
        return value

    def close(self) -> None:
        Path(self.out_dir, f"arrivals-{os.getpid()}-{id(self)}.json").write_text(
            json.dumps(self.seen)
        )


class SlowTail(MapFunction):  # type: ignore[misc]
    """Holds the job open (so checkpoints happen with every entity's state in place).

    Records starting with ``#tail`` are dropped; each one waits 20 ms until the file
    ``release`` exists in ``marker_dir`` (written by the client once a checkpoint taken after
    the last real record has completed). The first one writes ``tail-started``.
    """

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir
        self.started = False

    def map(self, value: str) -> str:
        if not value.startswith("#tail"):
            return value
        if not self.started:
            self.started = True
            Path(self.marker_dir, "tail-started").touch()
        if not Path(self.marker_dir, "release").exists():
            time.sleep(0.02)
        return ""


def run_latency_job(
    path: Path, rate: float, work: Path, *, entities: int, interval_ms: int, overrides: Sequence[str]
) -> dict[str, Any]:
    from pyflink.common.typeinfo import Types

    from job.pipeline import build_pipeline, file_source

    for f in work.glob("*.json"):
        f.unlink()
    cfg = bench_config([*overrides, "sink.emit_scores=true"])
    env = bench_environment(cfg, ship_job=True)
    paced = (
        file_source(env, str(path))
        .map(Pace(rate, str(work)), output_type=Types.STRING())
        .name("pace")
        .uid("pace")
    )
    outputs = build_pipeline(env, cfg, paced)
    for out_name, stream in outputs.items():
        if out_name == "scores":
            stream = (
                stream.map(Arrivals(str(work), entities, interval_ms), output_type=Types.STRING())
                .name("arrivals")
                .uid("arrivals")
            )
        discard(stream, out_name)
    timing = execute_job(env, "bench-latency")
    return {"timing": timing, **_read_latency_files(work)}


def _read_latency_files(work: Path) -> dict[str, Any]:
    paces = [json.loads(p.read_text()) for p in work.glob("pace-*.json")]
    arrivals = [a for p in work.glob("arrivals-*.json") for a in json.loads(p.read_text())]
    if len(paces) != 1:
        raise RuntimeError(f"expected one pace record file in {work}, found {len(paces)}")
    return {"pace": paces[0], "arrivals": arrivals}


def latency_stats(
    pace: dict[str, Any], arrivals: Sequence[Sequence[int]], *, warmup_s: float, tail_events: int
) -> dict[str, Any]:
    """Latency percentiles from the pace and arrival records (pure).

    ``from_send``: arrival minus the moment the pace operator let the event go.
    ``from_schedule``: arrival minus when it was due (``t0 + i / rate``): also counts the time
    an event waited because the source had fallen behind (no coordinated omission).
    Events of the first ``warmup_s`` and the last ``tail_events`` (released by the
    end-of-input flush) are left out.
    """
    sent = pace["sent_ns"]
    t0, rate = pace["t0_ns"], pace["rate"]
    first = int(warmup_s * rate)
    last = len(sent) - tail_events
    from_send, from_schedule = [], []
    for i, arrived in arrivals:
        if first <= i < last and i < len(sent):
            from_send.append((arrived - sent[i]) / 1e6)
            from_schedule.append((arrived - (t0 + i * 1e9 / rate)) / 1e6)
    if not from_send:
        raise ValueError("no latency sample left after the warm-up and tail cuts")
    achieved = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9) if len(sent) > 1 else None
    p = percentiles(from_send, [50, 90, 99, 100])
    s = percentiles(from_schedule, [50, 99])
    return {
        "samples": len(from_send),
        "target_rate": rate,
        "achieved_send_rate": achieved,
        "from_send_ms": {"p50": p[0], "p90": p[1], "p99": p[2], "max": p[3]},
        "from_schedule_ms": {"p50": s[0], "p99": s[1]},
    }


def run_checkpoint_job(
    entities: int, events_per_entity: int, metrics: int, work: Path
) -> dict[str, Any]:
    """Checkpoint size with ``entities`` entities in keyed state (MiniCluster, hashmap backend)."""
    from pyflink.common.typeinfo import Types

    from job.pipeline import build_pipeline, file_source

    if work.exists():
        shutil.rmtree(work)
    chk_dir = work / "checkpoints"
    markers = work / "markers"
    markers.mkdir(parents=True)
    n = entities * events_per_entity
    lines = generate_events(n, metrics=metrics, entities=entities)
    # One more entity an hour ahead: the watermark then passes every other entity's events,
    # so their release timers fire and no event stays buffered (a state replay can match).
    last_ts = json.loads(lines[-1])["ts"]
    clock = {"entity": "clock", "ts": last_ts + 3_600_000, "metrics": {"m00": 1.0}}
    lines.append(json.dumps(clock, separators=(",", ":")))
    tail = [f"#tail {k}" for k in range(6000)]  # at most 6000 * 20 ms = 2 minutes
    path = write_lines(work / "input.jsonl", [*lines, *tail])
    # The full snapshot on every write (no journal), so that every key's value is the encoded
    # snapshot the operator loop computes and Flink's per-key overhead can be derived; with the
    # default journal each entity holds up to snapshot_every - 1 more event payloads.
    cfg = bench_config(["execution.checkpoint_interval_ms=300", "execution.snapshot_every=1"])
    env = bench_environment(
        cfg,
        ship_job=True,
        conf={
            "execution.checkpointing.storage": "filesystem",
            "execution.checkpointing.dir": chk_dir.resolve().as_uri(),
            "execution.checkpointing.num-retained": "100",
        },
    )
    src = (
        file_source(env, str(path))
        .map(SlowTail(str(markers)), output_type=Types.STRING())
        .name("slow-tail")
        .uid("slow-tail")
        .filter(lambda s: s != "")
        .name("drop-tail")
        .uid("drop-tail")
    )
    for out_name, stream in build_pipeline(env, cfg, src).items():
        discard(stream, out_name)
    client = env.execute_async("bench-checkpoint")
    result = client.get_job_execution_result()
    sizes, chosen = _settled_checkpoint(chk_dir, markers, result)
    # (After the release the input ends, the final watermark fires the idle timers, every
    # entity's state is cleared, and a last checkpoint holds nothing.)
    chk_id = chosen
    chk_bytes, meta_bytes = sizes[chk_id]
    values = _encoded_values(lines, int(clock["ts"]))
    values_total = sum(values.values())
    keys = len(values)
    return {
        "entities": entities,
        "keys": keys,
        "events_per_entity": events_per_entity,
        "metrics": metrics,
        "checkpoint_id": chk_id,
        "checkpoint_bytes": chk_bytes,
        "metadata_bytes": meta_bytes,
        "encoded_values_bytes": values_total,
        "mean_encoded_value_bytes": values_total / keys,
        "overhead_bytes_per_key": (chk_bytes - meta_bytes - values_total) / keys,
        "checkpoints_seen": len(sizes),
    }


def _checkpoint_ids(chk_dir: Path) -> list[int]:
    ids = []
    for d in glob.glob(str(chk_dir / "*" / "chk-*")):
        try:
            ids.append(int(d.rsplit("-", 1)[1]))
        except ValueError:
            continue
    return ids


def _completed_checkpoints(chk_dir: Path) -> dict[int, tuple[int, int]]:
    """``{checkpoint id: (bytes of all its files, bytes of its _metadata)}``."""
    out = {}
    for d in glob.glob(str(chk_dir / "*" / "chk-*")):
        meta = os.path.join(d, "_metadata")
        if not os.path.exists(meta):
            continue
        try:
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            out[int(d.rsplit("-", 1)[1])] = (size, os.path.getsize(meta))
        except (OSError, ValueError):
            continue  # subsumed and deleted while we looked
    return out


def _settled_checkpoint(chk_dir: Path, markers: Path, result: Any) -> tuple[dict[int, tuple[int, int]], int]:
    """Follow the job's checkpoints until two taken after the tail started hold the same
    bytes (the watermark, emitted every 200 ms, has fired every release timer by then);
    release the tail; return every checkpoint's sizes and the settled one's id."""
    sizes: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + 600
    after: int | None = None
    chosen: int | None = None  # the newest full checkpoint when the tail is released
    while time.monotonic() < deadline:
        done = _completed_checkpoints(chk_dir)
        for cid, size in done.items():
            sizes[cid] = size
        if after is None and (markers / "tail-started").exists():
            after = max(_checkpoint_ids(chk_dir), default=0)
        # Settled: two checkpoints taken after the tail started hold the same bytes (the
        # watermark, emitted every 200 ms, has fired every release timer by then).
        late = sorted(cid for cid in sizes if after is not None and cid > after)
        if chosen is None and len(late) >= 2 and sizes[late[-1]] == sizes[late[-2]]:
            chosen = late[-1]
            (markers / "release").touch()
        if result.done():
            break
        time.sleep(0.05)
    result.result()  # raises if the job failed
    if chosen is None:
        raise RuntimeError("no checkpoint completed with every entity in state")
    return sizes, chosen


def _encoded_values(lines: list[str], clock_ts: int) -> dict[str, int]:
    """Encoded state bytes per entity after ``lines`` through the plain operator loop, every
    entity but the clock released as the watermark released it in the job."""
    cfg = DetectorConfig()
    states: dict[str, bytes] = {}
    operator_loop(lines, cfg, ParseConfig(), (), states_out=states)
    values = {}
    watermark = clock_ts - cfg.lateness.max_out_of_orderness_ms - 1
    for entity, data in states.items():
        if entity != "clock":  # what DetectAnomalies.on_timer does when the watermark passes
            det = EntityDetector.restore(entity, cfg, decode(data), WITH_FEATURES)
            det.on_watermark(watermark)
            data = encode(det.snapshot())
        values[entity] = len(data)
    return values
