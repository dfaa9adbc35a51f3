"""The fault matrix: exactly-once through real faults, on an input topic with four
partitions read at parallelism 2 on two TaskManagers.

A real broker (KRaft), a real standalone cluster (two TaskManagers, one slot each),
checkpoints every second, the production job (``flink run``) unbounded. Part of the input is
in the topic when the job starts; the rest is produced at a steady pace while the faults
happen, so each lands mid-flight. After each, once the job caught up, every output
consumers see (``read_committed``) equals the oracle's as a multiset and the alert ids are
the same: nothing lost, nothing twice. The cases:

- a TaskManager SIGKILLed three times in one run at random moments, one of them while a
  checkpoint is in progress (a spare TaskManager is started after each kill);
- the broker SIGKILLed (not stopped) while the job writes, and kept down for 30 s (less than
  the transaction timeout);
- the JobManager SIGKILLed, the cluster started again and the job resumed from its latest
  retained checkpoint with ``scripts/cluster.sh latest-checkpoint``;
- a stop with a savepoint while input is flowing, a resume at parallelism 1 from it
  (rescaling from 2), and another stop and resume at 2 from that one.

``FAULT_SEED`` (default 1) picks the input stream and the faults' moments: ``make soak`` runs
the matrix again for other seeds. ``make test`` runs the first case (the TaskManager kills);
``make test-e2e`` and ``make soak`` run them all.

The oracle (tests/e2e/test_job_kafka.py ``oracle``) knows the partition of every line: the
source makes the watermark per partition, the job's is the smallest. The jobs here accept
any forward step of event time (``execution.watermark_max_jump_ms`` above the input's 20 s
between an entity's events): the clock guard's confirmation depends on which events a
partition's generator has seen since its last restore, and so would the last watermark of
an unbounded run, the one thing the oracle has to predict. (What a job releases before it
is the same either way.)
"""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from job.config import load_config
from tests.e2e.conftest import standalone_cluster
from tests.e2e.test_job_kafka import (
    BASE_SETS,
    OutputReader,
    PacedProducer,
    _cluster_pids,
    cancel,
    checkpoints,
    counts_of,
    failures_since,
    job_sets,
    new_topics,
    oracle,
    produce,
    record_metrics,
    rest,
    settle_and_compare,
    start_broker,
    stop_with_savepoint,
    submit,
    wait_restarted,
    wait_until,
)
from tests.e2e.test_partitions import partition_of
from tests.minicluster.test_flink_job import _stream

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("FAULT_SEED", "1"))
PARTITIONS = 4
PARALLELISM = 2
ENTITIES = 8  # e0..e7, two per partition
LINES = _stream(seed=SEED, entities=ENTITIES, minutes=300)
FIRST = len(LINES) // 3  # in the topic when the job starts; the rest paced
RATE = 40  # records/s of the paced part: about 120 s, long enough for three kills
BROKER_DOWN_S = 30
SETS = ["execution.watermark_max_jump_ms=600000", f"execution.parallelism={PARALLELISM}"]


def _partition(line: str) -> int:
    return partition_of(line, PARTITIONS)


CFG = load_config(None, [*BASE_SETS, *SETS])
EXPECTED_FIRST = oracle([(LINES[:FIRST], CFG)], _partition)
EXPECTED = oracle([(LINES, CFG)], _partition)


@pytest.fixture(scope="module")
def cluster2(e2e_build_dir: pathlib.Path, pinned_jars: pathlib.Path):
    """A standalone cluster with two TaskManagers (one slot each)."""
    with standalone_cluster(e2e_build_dir, "flink2", taskmanagers=PARALLELISM) as cluster:
        yield cluster


class Run:
    """One case: topics (input with four partitions), the job, the paced producer and the
    reader of the committed outputs."""

    def __init__(self, broker: Any, cluster: Any, name: str) -> None:
        self.bs, self.cluster = broker.bootstrap, cluster
        self.topics = new_topics(self.bs, f"fm-{name}", events_partitions=PARTITIONS)
        self.events = self.topics["events"]
        self.sets = job_sets(self.topics, self.bs, SETS)
        self.reader = OutputReader(self.bs, self.topics)
        self.paced: PacedProducer | None = None
        self.job = ""
        self.rng = random.Random(f"{SEED}-{name}")

    def start(self) -> None:
        """The first part in the topic, the job on it, its outputs committed; then the rest
        paced, until a checkpoint holding some of it has completed."""
        produce(self.bs, self.events, LINES[:FIRST], _partition)
        self.job = self.submit()
        self.reader.wait_counts(counts_of(EXPECTED_FIRST), 240, "the first part's outputs")
        self.paced = PacedProducer(self.bs, self.events, LINES[FIRST:], RATE, _partition)
        self.paced.start()
        self.reader.wait_counts(
            {**counts_of(EXPECTED_FIRST), "scores": counts_of(EXPECTED_FIRST)["scores"] + 1},
            90, "committed outputs of the paced part")

    def submit(self, savepoint: str | None = None, parallelism: int = PARALLELISM) -> str:
        sets = [*self.sets, f"execution.parallelism={parallelism}"]
        return submit(self.cluster, sets, savepoint, slots=parallelism)

    def sent(self) -> str:
        assert self.paced is not None
        left = len(LINES) - FIRST - self.paced.sent
        assert left > RATE * 5, f"the paced input ran out before the fault ({left} left)"
        return f"{self.paced.sent} of {len(LINES) - FIRST}"

    def finish(self) -> float:
        """Every record produced, every output committed and equal to the oracle's; returns
        when the job had caught up (monotonic)."""
        assert self.paced is not None
        self.paced.finish()
        done = self.reader.wait_counts(counts_of(EXPECTED), 300, "every output after the faults")
        settle_and_compare(self.reader, self.cluster, self.job, EXPECTED)
        return done

    def close(self) -> None:
        if self.paced is not None:
            self.paced.join(5)
        self.reader.close()
        if self.job:
            cancel(self.cluster, self.job)


def _run_case(kafka_broker: Any, cluster: Any, name: str, fault: Callable[[Run], dict[str, Any]]) -> None:
    run = Run(kafka_broker, cluster, name)
    try:
        run.start()
        time.sleep(run.rng.uniform(0.0, 15.0))  # the fault at a random moment of the stream
        t0 = time.monotonic()
        measured = fault(run)
        t_done = run.finish()
        record_metrics(f"fault_matrix_{name}", {
            "seed": SEED, **measured, "fault_to_caught_up_s": round(t_done - t0, 1)})
    finally:
        run.close()


def _taskmanagers(cluster: Any) -> list[int]:
    return _cluster_pids(cluster, "taskexecutor")


def _kill_taskmanager(run: Run, during_checkpoint: bool) -> dict[str, Any]:
    """SIGKILL one of the job's TaskManagers (at random), start a spare, wait until the job
    runs again. ``during_checkpoint``: the moment a checkpoint is seen in progress."""
    cluster, job = run.cluster, run.job
    pending = None
    if during_checkpoint:
        # A checkpoint takes tens of ms here, and the REST API caches checkpoint statistics
        # for seconds: its folder is watched instead, ``chk-N`` without ``_metadata`` yet.
        folder = cluster.build_dir / "flink-checkpoints" / job
        done = {p.name for p in folder.glob("chk-*")}

        def in_progress() -> int | None:
            for chk in folder.glob("chk-*"):
                if chk.name not in done and not (chk / "_metadata").exists():
                    return int(chk.name[4:])
            return None

        pending = wait_until("a checkpoint in progress", in_progress, 60, every=0.001)
    tm = run.rng.choice(_taskmanagers(cluster))
    kill_ms = time.time() * 1000
    t_kill = time.monotonic()
    os.kill(tm, signal.SIGKILL)
    sent = run.sent()
    subprocess.run(cluster.script("add-taskmanager", "--build-dir", str(cluster.build_dir)),
                   check=True, capture_output=True, timeout=120)
    wait_restarted(cluster, job, kill_ms)
    out: dict[str, Any] = {"sent": sent, "kill_to_running_s": round(time.monotonic() - t_kill, 1)}
    if pending is not None:
        detail = rest(cluster, f"/jobs/{job}/checkpoints/details/{pending}")
        assert detail["status"] == "FAILED", f"checkpoint {pending} was {detail['status']} at the kill"
        out["checkpoint_in_progress_at_kill"] = pending
    return out


def test_taskmanager_killed_three_times(kafka_broker, cluster2):
    """Three SIGKILLs of a TaskManager in one run, a few random seconds after the job runs
    again each time; the second lands while a checkpoint is in progress."""

    def fault(run: Run) -> dict[str, Any]:
        kills = []
        for i in range(3):
            if i:
                time.sleep(run.rng.uniform(1.0, 6.0))  # a random moment of the stream
            kills.append(_kill_taskmanager(run, during_checkpoint=i == 1))
        restored = checkpoints(run.cluster, run.job)["latest"]["restored"]
        assert restored and not restored["is_savepoint"], restored
        assert failures_since(run.cluster, run.job, 0) >= 3
        return {"kills": kills}

    _run_case(kafka_broker, cluster2, "tm3", fault)


@pytest.mark.fault_matrix
def test_broker_sigkilled_and_down_for_30_s(kafka_broker, cluster2):
    """SIGKILL the broker while the job reads and writes (transactions open), keep it down
    for 30 s, start it again on the same folder and ports."""

    def fault(run: Run) -> dict[str, Any]:
        pid = int((kafka_broker.dir / "kafka.pid").read_text().strip())
        stop_wall_ms = time.time() * 1000
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        sent = run.sent()
        try:
            def commit_hit() -> bool:
                """The outage hits a commit: a checkpoint pending now or failed since."""
                return any(
                    h["status"] == "IN_PROGRESS"
                    or (h["status"] == "FAILED" and h["trigger_timestamp"] > stop_wall_ms)
                    for h in checkpoints(run.cluster, run.job)["history"]
                )

            wait_until("a checkpoint while the broker is down", commit_hit, BROKER_DOWN_S)
            # The outage lasts what the case says, whatever the job does meanwhile.
            time.sleep(max(0.0, BROKER_DOWN_S - (time.monotonic() - t_kill)))
        finally:
            start_broker(kafka_broker)
        return {"sent": sent, "broker_down_s": round(time.monotonic() - t_kill, 1),
                "job_restarts": failures_since(run.cluster, run.job, stop_wall_ms)}

    _run_case(kafka_broker, cluster2, "broker", fault)


@pytest.mark.fault_matrix
def test_jobmanager_killed_then_resumed_from_the_latest_retained_checkpoint(kafka_broker, cluster2):
    """SIGKILL the JobManager (no high availability: the job goes with it), stop what is
    left, start the cluster again and resume from what ``latest-checkpoint`` finds."""

    def fault(run: Run) -> dict[str, Any]:
        cluster, old = run.cluster, run.job
        [jm] = _cluster_pids(cluster, "standalonesession")
        t_kill = time.monotonic()
        os.kill(jm, signal.SIGKILL)
        sent = run.sent()
        run.job = ""  # gone with the JobManager
        subprocess.run(cluster.script("stop", "--build-dir", str(cluster.build_dir)),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(cluster.script("start", "--taskmanagers", str(PARALLELISM), "--build-dir",
                                      str(cluster.build_dir), "--timeout", "150"),
                       check=True, capture_output=True, timeout=240)
        found = subprocess.run(
            cluster.script("latest-checkpoint", "--job", old, "--build-dir", str(cluster.build_dir)),
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()
        assert f"/{old}/chk-" in found, found
        run.job = run.submit(found)
        restored = checkpoints(cluster, run.job)["latest"]["restored"]
        assert restored and restored["external_path"].rstrip("/").endswith(found.rsplit("/", 1)[-1])
        return {"sent": sent, "resumed_from": found.rsplit("/", 1)[-1],
                "kill_to_resumed_running_s": round(time.monotonic() - t_kill, 1)}

    _run_case(kafka_broker, cluster2, "jm", fault)


@pytest.mark.fault_matrix
def test_stop_with_savepoint_while_flowing_then_resume_at_1_and_again_at_2(kafka_broker, cluster2):
    """Stop with a savepoint mid-stream and resume at parallelism 1 (every key group moves
    to one subtask, the four partitions to one reader); once it has committed more, stop
    again and resume at 2 from that savepoint."""

    def fault(run: Run) -> dict[str, Any]:
        steps = []
        for parallelism in (1, PARALLELISM):
            sent = run.sent()
            savepoint = stop_with_savepoint(run.cluster, run.job)
            run.job = ""
            run.job = run.submit(savepoint, parallelism=parallelism)
            restored = checkpoints(run.cluster, run.job)["latest"]["restored"]
            assert restored and restored["is_savepoint"], restored
            # more of the stream committed by this job before the next step
            run.reader.poll()
            base = run.reader.counts()["scores"]
            run.reader.wait_counts({**run.reader.counts(), "scores": base + 20}, 120,
                                   f"outputs committed at parallelism {parallelism}")
            steps.append({"sent": sent, "parallelism": parallelism})
        return {"steps": steps}

    _run_case(kafka_broker, cluster2, "savepoint", fault)
