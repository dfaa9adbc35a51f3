"""Every Kafka record the job writes carries its entity as the key: one entity's alerts (and
scores, drift and health records, dead letters and late records that name an entity) sit in
one partition of a multi-partition topic, in the order the job wrote them. The job runs on
the local MiniCluster over a stream of five entities with incidents, stragglers and bad lines (a bounded file: the sinks commit at its end) into
a real broker; the topics are read with read_committed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests import ROOT
from tests.configs import FAST
from tests.e2e.kafka_helpers import create_topics, unique
from tests.minicluster.test_flink_job import _stream

pytestmark = pytest.mark.e2e

OUTPUTS = ("alerts", "scores", "drift", "dead_letter", "late")
PARTITIONS = 4


def read_keyed(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[int, bytes | None, dict[str, Any]]]:
    """Every committed record of ``topic``: ``(partition, key, value)`` in partition order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("keyed-reader"),
        "isolation.level": "read_committed", "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        parts = sorted(consumer.list_topics(topic, timeout=timeout).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[int, bytes | None, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append((msg.partition(), msg.key(), json.loads(msg.value())))
                continue
            # Done when every partition's position passed its end offset (transaction markers
            # take offsets too, so the last record's offset + 1 may be short of it).
            positions = consumer.position([TopicPartition(topic, p) for p in parts])
            if all(ends[tp.partition] == 0 or tp.offset >= ends[tp.partition] for tp in positions):
                break
        return out
    finally:
        consumer.close()


def test_each_entitys_records_are_keyed_by_it_and_stay_in_one_partition_in_order(
    kafka_broker: Any, tmp_path: Path
) -> None:
    bs = kafka_broker.bootstrap
    base = unique("keyed")
    topics = {name: f"{base}-{name.replace('_', '-')}" for name in ("events", *OUTPUTS)}
    create_topics(bs, *topics.values(), partitions=PARTITIONS)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(_stream(seed=5, entities=5, minutes=300)) + "\n")
    sets = [
        *FAST, "source.type=file", f"source.path={events}", "sink.type=kafka", "sink.emit_scores=true",
        "execution.checkpoint_interval_ms=1000",
        f"kafka.bootstrap_servers={bs}", f"kafka.transactional_id_prefix={base}",
        *(f"kafka.{name}_topic={topic}" for name, topic in topics.items()),
    ]
    cmd = [sys.executable, "-m", "job", "run", *(arg for s in sets for arg in ("--set", s))]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    for name in OUTPUTS:
        records = read_keyed(bs, topics[name])
        if name in ("alerts", "scores"):
            assert records, f"no {name} records"
        where: dict[str, set[int]] = defaultdict(set)
        order: dict[str, list[int]] = defaultdict(list)
        for partition, key, value in records:
            entity = value.get("entity")
            if isinstance(entity, str):
                assert key == entity.encode(), (name, key, entity)
                where[entity].add(partition)
                if "ts_ms" in value:
                    order[entity].append(int(value["ts_ms"]))
            else:
                assert key is None, (name, key, value)
        assert all(len(p) == 1 for p in where.values()), (name, dict(where))
        if name in ("alerts", "scores"):
            assert all(ts == sorted(ts) for ts in order.values()), name
    scores = read_keyed(bs, topics["scores"])
    entities = {v["entity"] for _, _, v in scores}
    assert len(entities) >= 4 and len({p for p, _, _ in scores}) >= 2  # really spread
