"""Many entities on one TaskManager: RocksDB with incremental checkpoints against the heap.

The ``scale`` part of ``python -m job bench`` (and, with ``--scale-entities 1000000``, the
million-entity run). On a standalone cluster of one one-slot TaskManager (the RocksDB
profile of ``scripts/cluster.sh``), it runs:

1. the heap backend over ``heap_entities`` entities (``heap_rounds`` events each), and
2. RocksDB with incremental checkpoints over ``entities`` entities (``rounds`` events
   each), read from a watched file so that the job stays open after the last event (no
   end of input): a checkpoint after the last event, a second TaskManager, the first one
   SIGKILLed, and the time until the keyed operator runs again on the restored state and
   the next checkpoint completes.

The jobs are the job's own pipeline on a file source, nothing else: no operator of the
harness runs Python, which would share the TaskManager's interpreter (one GIL, thread mode)
with the keyed operator and slow it down.

Throughput is the steady part of each run: the keyed operator's ``anomaly.events`` counter
and the CPU time of every process of the cluster, both sampled every ``POLL_S``, between the
samples at 20 % and 95 % of the events (job start, the first entities' state creation and
the end-of-input flush fall outside). Every entity reports once per round, in timestamp
order (1 ms apart), so no event is late and every event after the first round reads and
writes state that is not in the operator's cache (4,096 entities): the worst case for a
state backend.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script by `flink run -py`: the project on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import json
import random
import signal
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import HEADLINE_METRICS, T0_MS
from tools.bench.flink import CpuMeter
from tools.bench.standalone import StandaloneCluster, cluster_pids, sample_until, steady_rate
from tools.bench.stats import ratio
from tools.bench.streams import entity_name, metric_names

POLL_S = 2.0
CHECKPOINT_MS = 10_000
#: How often the RocksDB job's watched input file is listed again (it never changes).
WATCH_MS = 60_000


def scale_lines(entities: int, rounds: int, metrics: int = HEADLINE_METRICS, seed: int = 42) -> Iterator[str]:
    """``rounds`` rounds in which every entity reports once, 1 ms apart (deterministic).

    Each entity has its own level per metric; values are the level with 5 % Gaussian noise.

    Examples
    --------
    >>> [json.loads(x)["entity"] for x in scale_lines(2, 2, metrics=1)]
    ['ent-00000', 'ent-00001', 'ent-00000', 'ent-00001']
    """
    rng = random.Random(seed)
    names = metric_names(metrics)
    levels = [10.0 + 90.0 * ((e * 2654435761) % 1000) / 1000.0 for e in range(entities)]
    for r in range(rounds):
        for e in range(entities):
            lv = levels[e]
            ev = {
                "entity": entity_name(e),
                "ts": T0_MS + r * entities + e,
                "metrics": {n: round(lv * (1.0 + 0.05 * rng.gauss(0.0, 1.0)) + j, 3) for j, n in enumerate(names)},
            }
            yield json.dumps(ev, separators=(",", ":"))


def _write_input(path: Path, entities: int, rounds: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for line in scale_lines(entities, rounds):
            f.write(line + "\n")
    return path


# -- inside the cluster ---------------------------------------------------------------------------


def _job_main(argv: Sequence[str]) -> int:
    """``flink run -py tools/bench/scale.py -- scale-job --input F --backend B ...``
    (``--watch``: the input is watched, the job never ends)."""
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--input", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--rocksdb-dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--watch", action="store_true")
    a = p.parse_args(argv)
    from job.pipeline import build_pipeline, file_source
    from tools.bench.flink import bench_config, bench_environment, discard

    cfg = bench_config(
        [f"execution.state_backend={a.backend}", f"execution.checkpoint_interval_ms={CHECKPOINT_MS}"]
    )
    env = bench_environment(cfg, ship_job=True, conf={"state.backend.rocksdb.localdir": a.rocksdb_dir})
    src = file_source(env, a.input, watch_ms=WATCH_MS if a.watch else 0)
    for out_name, stream in build_pipeline(env, cfg, src).items():
        discard(stream, out_name)
    env.execute(a.name)  # detached (`flink run -d`): returns once submitted
    return 0


# -- the driver -----------------------------------------------------------------------------------


def _submit(c: StandaloneCluster, name: str, input_path: Path, backend: str, rocksdb_dir: Path, watch: bool) -> str:
    rocksdb_dir.mkdir(parents=True, exist_ok=True)
    args = ["-py", "tools/bench/scale.py", "-pyfs", "udfs,state", "scale-job", "--input", str(input_path)]
    args += ["--backend", backend, "--rocksdb-dir", str(rocksdb_dir), "--name", name] + (["--watch"] if watch else [])
    return c.submit(name, args)


def _run_until_scored(
    c: StandaloneCluster, jid: str, total: int, meter: CpuMeter, timeout_s: float, log: Callable[[str], None]
) -> tuple[list[tuple[float, int, float]], float]:
    """Samples until the keyed operator has scored all but the last few events (those within
    the ordering bound of the newest wait for the end of input), and the seconds that took."""
    vid = c.detect_vertex(jid)

    def done(n: int) -> bool:
        # the ordering bound (5 s) of 1-ms-apart events, and some; or finished (its last
        # counts may not be fetched)
        return n >= total - 6_000 or c.state(jid) == "FINISHED"

    def progress(n: int, seconds: float) -> None:
        log(f"    {n:,} / {total:,} events ({n / seconds:,.0f} events/s)")

    samples = sample_until(done, lambda: c.events(jid, vid), meter, POLL_S, timeout_s, progress)
    return samples, samples[-1][0] - samples[0][0]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _next_checkpoint(c: StandaloneCluster, jid: str, after_ms: int, timeout_s: float) -> dict[str, Any]:
    """The first checkpoint completed that was triggered after ``after_ms`` (epoch ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        for h in c.checkpoints(jid).get("history", []):
            if h["status"] == "COMPLETED" and h["trigger_timestamp"] > after_ms:
                return dict(h)
        time.sleep(0.5)
    raise TimeoutError(f"no checkpoint completed within {timeout_s:.0f} s")


def _kill_and_restore(c: StandaloneCluster, jid: str, log: Callable[[str], None]) -> dict[str, Any]:
    """SIGKILL the job's TaskManager with a spare one registered; time the restore."""
    tms = cluster_pids(c.build, "taskexecutor")
    c.script_run("add-taskmanager", timeout=120)
    t0 = time.monotonic()
    while c.get("/overview")["taskmanagers"] < 2:
        if time.monotonic() - t0 > 120:
            raise TimeoutError("the spare TaskManager did not register")
        time.sleep(0.5)
    vid = c.detect_vertex(jid)
    kill_ms = int(time.time() * 1000)
    for p in tms:
        os.kill(p, signal.SIGKILL)
    t_kill = time.monotonic()
    seen_restart = False
    while True:
        st = c.get(f"/jobs/{jid}")
        seen_restart = seen_restart or st["state"] != "RUNNING" or any(v["status"] != "RUNNING" for v in st["vertices"])
        detect = next(v for v in st["vertices"] if v["id"] == vid)
        if seen_restart and st["state"] == "RUNNING" and detect["status"] == "RUNNING":
            break
        if time.monotonic() - t_kill > 600:
            raise TimeoutError("the job did not run again within 600 s of the kill")
        time.sleep(0.2)
    running_s = time.monotonic() - t_kill
    times = c.get(f"/jobs/{jid}/vertices/{vid}/subtasktimes")["subtasks"][0]["timestamps"]
    init_s = (times["RUNNING"] - times["INITIALIZING"]) / 1000.0 if "INITIALIZING" in times else None
    chk = _next_checkpoint(c, jid, int(time.time() * 1000), 600)
    resumed_s = (chk["latest_ack_timestamp"] - kill_ms) / 1000.0
    restored = c.checkpoints(jid).get("latest", {}).get("restored") or {}
    log(f"    TaskManager killed: keyed operator running again after {running_s:.1f} s "
        f"(state restore {init_s if init_s is None else round(init_s, 1)} s), next checkpoint at {resumed_s:.1f} s")
    return {"restore_s": running_s, "state_restore_s": init_s, "resume_checkpoint_s": resumed_s,
            "restored_checkpoint": restored.get("id")}


def run_scale(
    work: Path, log: Callable[[str], None], *, entities: int, rounds: int = 3,
    heap_entities: int = 10_000, heap_rounds: int = 10,
) -> dict[str, Any]:
    """The heap and RocksDB runs of the module docstring; returns the figures."""
    work.mkdir(parents=True, exist_ok=True)
    heap_in = _write_input(work / "heap.jsonl", heap_entities, heap_rounds)
    rocks_in = _write_input(work / "rocksdb.jsonl", entities, rounds)
    log(f"  inputs: heap {heap_entities:,} x {heap_rounds}, RocksDB {entities:,} x {rounds} events")
    c = StandaloneCluster(work, taskmanagers=1, backend="rocksdb")
    res: dict[str, Any] = {"entities": entities, "rounds": rounds, "heap_entities": heap_entities,
                           "heap_rounds": heap_rounds, "metrics": HEADLINE_METRICS, "checkpoint_ms": CHECKPOINT_MS}
    try:
        with CpuMeter(cluster_pids(c.build)) as meter:
            jid = _submit(c, "bench-scale-heap", heap_in, "hashmap", work / "rocksdb-heap", watch=False)
            total = heap_entities * heap_rounds
            samples, _ = _run_until_scored(c, jid, total, meter, 1800, log)
            res["heap"] = steady_rate(samples, total)
            c.wait_status(jid, "FINISHED", 300)
            log(f"    heap: {res['heap']['eps_per_cpu_s'] or 0:,.0f} events/CPU-s")
            rdir = work / "rocksdb-local"
            jid = _submit(c, "bench-scale-rocksdb", rocks_in, "rocksdb", rdir, watch=True)
            total = entities * rounds
            samples, scored_s = _run_until_scored(c, jid, total, meter, 3600, log)
            res["rocksdb"] = steady_rate(samples, total)
            res["rocksdb"]["scored_s"] = scored_s
            log(f"    RocksDB: {res['rocksdb']['eps_per_cpu_s'] or 0:,.0f} events/CPU-s, all scored in {scored_s:.0f} s")
            during = [h for h in c.checkpoints(jid).get("history", []) if h["status"] == "COMPLETED"]
            full = _next_checkpoint(c, jid, int(time.time() * 1000), 900)
            quiet = _next_checkpoint(c, jid, int(time.time() * 1000), 900)
            res["local_rocksdb_bytes"] = _du(rdir)
            res["checkpoints"] = {
                "during": [{k: h.get(k) for k in ("id", "state_size", "checkpointed_size", "end_to_end_duration")} for h in during],
                "after": {k: full.get(k) for k in ("id", "state_size", "checkpointed_size", "end_to_end_duration")},
                "unchanged": {k: quiet.get(k) for k in ("id", "state_size", "checkpointed_size", "end_to_end_duration")},
            }
            res.update(_kill_and_restore(c, jid, log))
            # Done measuring: cancel. (A bounded input would end with the final watermark,
            # which fires every entity's watch timer: a load per entity, ~20 min at a million.)
            c.cancel(jid)
    finally:
        c.stop()
    inc = [h["checkpointed_size"] for h in res["checkpoints"]["during"] if h["checkpointed_size"]]
    durs = [h["end_to_end_duration"] for h in res["checkpoints"]["during"] if h["end_to_end_duration"]]
    after = res["checkpoints"]["after"]
    res.update(
        heap_eps_per_cpu_s=res["heap"]["eps_per_cpu_s"],
        rocksdb_eps_per_cpu_s=res["rocksdb"]["eps_per_cpu_s"],
        rocksdb_vs_heap_per_cpu_s=ratio(res["rocksdb"]["eps_per_cpu_s"], res["heap"]["eps_per_cpu_s"]),
        rocksdb_state_bytes_per_entity=res["local_rocksdb_bytes"] / entities,
        checkpoint_full_bytes=after["state_size"],
        checkpoint_full_s=(after["end_to_end_duration"] or 0) / 1000.0,
        checkpoint_bytes_per_entity=after["state_size"] / entities,
        checkpoint_incremental_bytes=statistics.median(inc) if inc else None,
        checkpoint_incremental_s=statistics.median(durs) / 1000.0 if durs else None,
    )
    return res


def render_scale(res: dict[str, Any]) -> list[str]:
    """The report's section on the scale run (markdown lines)."""
    def f(x: Any, d: int = 0) -> str:
        return "n/a" if x is None else f"{x:,.{d}f}" if isinstance(x, float) else f"{x:,}"

    ch = res["checkpoints"]
    return [
        "", f"## RocksDB at {res['entities']:,} entities on one TaskManager (standalone cluster, thread mode)", "",
        f"{res['metrics']} metrics, {res['rounds']} events per entity (RocksDB) and {res['heap_entities']:,} entities x "
        f"{res['heap_rounds']} (heap); checkpoints every {res['checkpoint_ms'] / 1000:.0f} s; steady rates between 20 % "
        "and 95 % of the events; CPU = every process of the cluster.", "",
        "| measure | value |", "|---|---|",
        f"| heap events/s; per CPU-s | {f(res['heap']['eps'])}; {f(res['heap_eps_per_cpu_s'])} |",
        f"| RocksDB events/s; per CPU-s | {f(res['rocksdb']['eps'])}; {f(res['rocksdb_eps_per_cpu_s'])} |",
        f"| RocksDB / heap per CPU-s | {f(res['rocksdb_vs_heap_per_cpu_s'], 2)} |",
        f"| all events scored after (s) | {f(res['rocksdb']['scored_s'], 0)} |",
        f"| RocksDB local files per entity (bytes) | {f(res['rocksdb_state_bytes_per_entity'])} |",
        f"| checkpoint after the last event: full state (bytes, per entity), uploaded, duration | "
        f"{f(res['checkpoint_full_bytes'])} ({f(res['checkpoint_bytes_per_entity'])}), "
        f"{f(ch['after']['checkpointed_size'])}, {f(res['checkpoint_full_s'], 1)} s |",
        f"| checkpoints while scoring (incremental): uploaded bytes, duration (median of {len(ch['during'])}) | "
        f"{f(res['checkpoint_incremental_bytes'])}, {f(res['checkpoint_incremental_s'], 1)} s |",
        f"| checkpoint with nothing changed: uploaded bytes | {f(ch['unchanged']['checkpointed_size'])} |",
        f"| TaskManager SIGKILL to the keyed operator running again on restored state (s) | {f(res['restore_s'], 1)} |",
        f"| of which state restore (INITIALIZING to RUNNING) (s) | {f(res['state_restore_s'], 1)} |",
        f"| TaskManager SIGKILL to the next completed checkpoint (s) | {f(res['resume_checkpoint_s'], 1)} |",
    ]


if __name__ == "__main__":  # `flink run -py tools/bench/scale.py -- scale-job ...`
    sys.exit(_job_main(sys.argv[1:]))
