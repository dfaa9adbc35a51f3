"""Rescaling through savepoints on the standalone cluster: a job at parallelism 1 is stopped
with a savepoint and resumed at 2, then at 4, then back at 1, with input produced between
the phases. 10,000 entities, so every key group
moves at each step (Flink spreads 128 key groups over the subtasks). The outputs committed
over the four jobs equal, as multisets, the replay of the whole input in one go: the
uninterrupted run, since a bounded run of the job equals the replay (tests/minicluster).

The last phase ends with a stop that drains (``flink stop --drain``): Flink sends the final
watermark first, which flushes what every entity still holds, as the replay's end of input
does. (A bounded source cannot be resumed from an unbounded job's savepoint: the restored
Kafka splits keep their own, open, stopping offsets.)
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from job.config import load_config
from tests.configs import FAST
from tests.e2e.conftest import standalone_cluster
from tests.e2e.kafka_helpers import create_topics, unique
from tests.e2e.test_job_kafka import (
    OUTPUTS,
    OutputReader,
    assert_outputs_equal,
    cancel,
    job_state,
    rest,
    submit,
    wait_until,
)
from tests.minicluster.test_flink_job import T0, _replay_outputs, _stream

pytestmark = pytest.mark.e2e

ENTITIES = 10_000
# Four input partitions, each entity's events in one (keyed), read by 1, 2 or 4 source
# subtasks: the watermark is made per partition (job/pipeline.py line_watermarks), so how far
# one partition was read ahead of another changes no output.
PARTITIONS = 4
PHASES = (1, 2, 4, 1)  # parallelism of each job; the last one drained


@pytest.fixture(scope="module")
def cluster4(e2e_build_dir: pathlib.Path, pinned_jars: pathlib.Path):
    """A second standalone cluster with four TaskManagers (one slot each)."""
    with standalone_cluster(e2e_build_dir, "flink4", taskmanagers=4) as cluster:
        yield cluster


def many_entities_stream() -> list[str]:
    """The 4-entity stream of the MiniCluster tests (an incident, shuffles, stragglers,
    malformed lines) with 10,000 more entities, four events each, merged in by time."""
    base = _stream(seed=11, entities=4, minutes=360)
    extra = [
        (T0 + k * 900_000 + i * 100, json.dumps(
            {"entity": f"u{i:05d}", "ts": T0 + k * 900_000 + i * 100,
             "metrics": {"cpu": round(20 + (i * 7 + k * 3) % 50 + 0.5, 3), "lat_ms": 100.0}}))
        for k in range(4) for i in range(ENTITIES)
    ]
    extra.sort()
    out: list[str] = []
    j = 0
    for line in base:
        try:
            ts = json.loads(line)["ts"]
        except (ValueError, KeyError):
            ts = None
        if isinstance(ts, int):
            while j < len(extra) and extra[j][0] <= ts:
                out.append(extra[j][1])
                j += 1
        out.append(line)
    out += [line for _, line in extra[j:]]
    return out


def produce_keyed(bootstrap: str, topic: str, lines: list[str]) -> None:
    """Each event keyed by its entity (one entity, one partition, in order)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 20})
    for line in lines:
        try:
            key = json.loads(line).get("entity")
        except (ValueError, AttributeError):
            key = None
        while True:
            try:
                producer.produce(topic, line.encode(), key=str(key).encode() if key else None)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0, "records not delivered to the input topic"


def caught_up(bootstrap: str, topic: str, group: str) -> bool:
    """The job's consumer group has committed (on a checkpoint) every partition's end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = c.committed(parts, timeout=10)
        for tp in committed:
            _, end = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if tp.offset < end:
                return False
        return True
    finally:
        c.close()


def stop(cluster: Any, job: str, drain: bool) -> str:
    """Stop with a savepoint; with ``drain``, after the final watermark (end of input)."""
    target = str(cluster.build_dir / "flink-savepoints")
    trigger = rest(cluster, f"/jobs/{job}/stop", method="POST",
                   body={"targetDirectory": target, "drain": drain})["request-id"]

    def done() -> str | None:
        st = rest(cluster, f"/jobs/{job}/savepoints/{trigger}")
        if st["status"]["id"] != "COMPLETED":
            return None
        assert "failure-cause" not in st["operation"], st["operation"]
        return str(st["operation"]["location"])

    location = wait_until("the savepoint", done, 180)
    wait_until(f"job {job} FINISHED after stop", lambda: job_state(cluster, job) == "FINISHED", 60)
    return location


def run_phase(cluster: Any, sets: list[str], savepoint: str | None, last: bool,
              bs: str, topic: str, group: str) -> str:
    job = submit(cluster, sets, savepoint)
    try:
        wait_until("the phase's input consumed and checkpointed",
                   lambda: caught_up(bs, topic, group), 300)
        return stop(cluster, job, drain=last)
    except BaseException:
        cancel(cluster, job)
        raise


def test_savepoints_rescale_1_2_4_1_and_the_outputs_equal_one_run(kafka_broker, cluster4):
    bs = kafka_broker.bootstrap
    lines = many_entities_stream()
    base = unique("rescale")
    topics = {k: f"{base}-{k.replace('_', '-')}" for k in ("events", *OUTPUTS)}
    create_topics(bs, topics["events"], partitions=PARTITIONS)
    create_topics(bs, *(topics[k] for k in OUTPUTS))
    group = f"{base}-job"
    common = [
        *FAST, "sink.emit_scores=true", "execution.checkpoint_interval_ms=1000",
        "source.type=kafka", "sink.type=kafka", f"kafka.bootstrap_servers={bs}",
        *(f"kafka.{k}_topic={t}" for k, t in topics.items()),
        f"kafka.group_id={group}", f"kafka.transactional_id_prefix={base}",
        "kafka.starting_offsets=earliest", "kafka.transaction_timeout_ms=300000",
    ]
    expected = _replay_outputs(lines, load_config(None, common))
    assert sum(expected["scores"].values()) > 4 * ENTITIES
    assert any('"kind": "open"' in a for a in expected["alerts"])
    assert expected["late"] and expected["dead_letter"]

    cuts = [len(lines) * i // len(PHASES) for i in range(len(PHASES) + 1)]
    reader = OutputReader(bs, topics)
    savepoint: str | None = None
    timings = []
    try:
        for i, parallelism in enumerate(PHASES):
            last = i == len(PHASES) - 1
            produce_keyed(bs, topics["events"], lines[cuts[i]:cuts[i + 1]])
            sets = [*common, f"execution.parallelism={parallelism}"]
            t0 = time.monotonic()
            savepoint = run_phase(cluster4, sets, savepoint, last, bs, topics["events"], group)
            timings.append((parallelism, round(time.monotonic() - t0, 1)))
        reader.drain()
        assert_outputs_equal(reader.values, expected)
        print(f"\nrescale phases (parallelism, seconds): {timings}; "
              f"{len(lines)} records, {ENTITIES + 4} entities")
        assert rest(cluster4, "/overview")["taskmanagers"] == 4
    finally:
        reader.close()
