"""The Flink Kafka connector (5.0.0-2.2, built for Flink 2.2) works with Flink 2.3: a PyFlink
job reading with KafkaSource and writing with an EXACTLY_ONCE KafkaSink, submitted with
`flink run -py` to the standalone cluster, delivers every record once, committed."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Producer

from tests.e2e.conftest import ROOT
from tests.e2e.kafka_helpers import create_topics, read_all, unique

pytestmark = pytest.mark.e2e

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

    match = re.search(r"JobID ([0-9a-f]{32})", output)
    assert match, output[-2000:]
    job_id = match.group(1)
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
