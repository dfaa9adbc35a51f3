"""The Flink Kafka connector (5.0.0-2.2, built for Flink 2.2) works with Flink 2.3: a PyFlink
job reading with KafkaSource and writing with an EXACTLY_ONCE KafkaSink, submitted with
`flink run -py` to the standalone cluster, delivers every record once, committed."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Producer

from tests.e2e.kafka_helpers import create_topics, read_all, unique

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
N_RECORDS = 500
JOB = ROOT / "tests" / "e2e" / "kafka_roundtrip_job.py"


def rest_get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_kafka_roundtrip_exactly_once_on_standalone_cluster(kafka_broker, flink_cluster):
    bs = kafka_broker.bootstrap
    in_topic, out_topic = unique("rt-in"), unique("rt-out")
    create_topics(bs, in_topic, out_topic)

    producer = Producer({"bootstrap.servers": bs, "enable.idempotence": True})
    sent = [f"event-{i:04d}" for i in range(N_RECORDS)]
    for value in sent:
        producer.produce(in_topic, value.encode())
    assert producer.flush(30) == 0

    cmd = flink_cluster.script(
        "submit", "--build-dir", str(flink_cluster.build_dir), "--",
        "-py", str(JOB),
        "--bootstrap", bs, "--in-topic", in_topic, "--out-topic", out_topic,
        "--txn-prefix", unique("rt"), "--checkpoint-ms", "1000",
    )
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    (flink_cluster.build_dir / "roundtrip-submit.log").write_text(output)
    assert proc.returncode == 0, f"flink run failed after {elapsed:.0f}s:\n{output[-4000:]}"

    job_id = job_id_of(output)
    job = rest_get(f"{flink_cluster.rest_url}/jobs/{job_id}")
    assert job["state"] == "FINISHED", job["state"]
    checkpoints = rest_get(f"{flink_cluster.rest_url}/jobs/{job_id}/checkpoints")
    assert checkpoints["counts"]["completed"] >= 1, checkpoints["counts"]

    got = read_all(bs, out_topic, isolation="read_committed", expect=N_RECORDS, timeout=30)
    expected = [f"roundtrip:{v.upper()}" for v in sent]
    assert len(got) == N_RECORDS, f"{len(got)} of {N_RECORDS} records committed"
    assert got == expected  # one partition, parallelism 1: order is kept, no duplicates
    print(f"\nroundtrip: flink run took {elapsed:.1f}s, "
          f"{checkpoints['counts']['completed']} checkpoint(s) completed")


def job_id_of(output: str) -> str:
    match = re.search(r"JobID ([0-9a-f]{32})", output)
    assert match, f"no JobID in flink output:\n{output[-2000:]}"
    return match.group(1)


def run_cli(cluster, *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        cluster.script(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def wait_for_state(cluster, job_id: str, states: set[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    state = "?"
    while time.monotonic() < deadline:
        state = rest_get(f"{cluster.rest_url}/jobs/{job_id}")["state"]
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is {state}, not in {states} after {timeout}s")


def test_stop_with_savepoint_and_resume_is_exactly_once(kafka_broker, flink_cluster):
    """`flink stop --savepointPath` then `flink run -s`: nothing lost, nothing duplicated.
    Also guards the PEMJA fix in scripts/cluster.sh: the resumed job is the second Python
    job on the same TaskManager (it failed with NoSuchFieldException: loadedLibraryNames)."""
    bs = kafka_broker.bootstrap
    in_topic, out_topic = unique("sp-in"), unique("sp-out")
    create_topics(bs, in_topic, out_topic)
    bdir = str(flink_cluster.build_dir)
    job_args = [
        "-py", str(JOB), "--bootstrap", bs, "--in-topic", in_topic, "--out-topic", out_topic,
        "--txn-prefix", unique("sp"), "--checkpoint-ms", "1000", "--unbounded",
    ]
    producer = Producer({"bootstrap.servers": bs, "enable.idempotence": True})

    def produce(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            producer.produce(in_topic, f"e-{i:04d}".encode())
        assert producer.flush(30) == 0

    expected = [f"roundtrip:E-{i:04d}" for i in range(400)]
    running: list[str] = []
    try:
        produce(0, 200)
        out = run_cli(flink_cluster, "submit", "--build-dir", bdir, "--", "-d", *job_args)
        job1 = job_id_of(out)
        running.append(job1)
        wait_for_state(flink_cluster, job1, {"RUNNING"})
        assert read_all(bs, out_topic, expect=200, timeout=90) == expected[:200]

        savepoints = flink_cluster.build_dir / "flink-savepoints"
        out = run_cli(flink_cluster, "flink", "--build-dir", bdir, "--",
                      "stop", "--savepointPath", str(savepoints), job1)
        match = re.search(r"Savepoint completed\. Path: (\S+)", out)
        assert match, f"no savepoint path in flink stop output:\n{out[-2000:]}"
        savepoint = match.group(1)
        assert wait_for_state(flink_cluster, job1, {"FINISHED", "FAILED"}) == "FINISHED"
        running.remove(job1)

        produce(200, 400)  # arrives while no job runs
        out = run_cli(flink_cluster, "submit", "--build-dir", bdir, "--",
                      "-d", "-s", savepoint, *job_args)
        job2 = job_id_of(out)
        running.append(job2)
        wait_for_state(flink_cluster, job2, {"RUNNING"})

        got = read_all(bs, out_topic, expect=400, timeout=90)
        assert len(got) == 400, f"{len(got)} of 400 records committed"
        assert got == expected
        # and nothing more turns up (a duplicate would be record 401)
        assert read_all(bs, out_topic, timeout=10) == expected
        assert rest_get(f"{flink_cluster.rest_url}/jobs/{job2}")["state"] == "RUNNING"
    finally:
        for job in running:
            subprocess.run(flink_cluster.script("flink", "--build-dir", bdir, "--", "cancel", job),
                           cwd=ROOT, capture_output=True, timeout=120)
            try:
                wait_for_state(flink_cluster, job, {"CANCELED", "FINISHED", "FAILED"}, timeout=60)
            except Exception:  # best effort: the session fixture stops the cluster anyway
                pass
