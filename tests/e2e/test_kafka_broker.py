"""The single-node KRaft broker of scripts/kafka.sh supports transactions end to end."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from tests.e2e.kafka_helpers import create_topics, read_all, unique

pytestmark = pytest.mark.e2e


def test_broker_runs_in_kraft_mode(kafka_broker):
    meta = (kafka_broker.dir / "data" / "meta.properties").read_text()
    # KRaft meta.properties is version 1 with a node.id (ZooKeeper-era was version 0, broker.id)
    assert "version=1" in meta and "node.id=1" in meta, meta
    # the KRaft metadata log lives in the data dir
    assert (kafka_broker.dir / "data" / "__cluster_metadata-0").is_dir()
    props = (kafka_broker.dir / "server.properties").read_text()
    assert "process.roles=broker,controller" in props
    assert "zookeeper" not in props


def test_transactions_committed_visible_aborted_not(kafka_broker):
    bs = kafka_broker.bootstrap
    topic = unique("txn")
    create_topics(bs, topic)

    producer = Producer({"bootstrap.servers": bs, "transactional.id": unique("e2e-txn")})
    producer.init_transactions(60)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"committed-1-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, f"aborted-{i}".encode())
    producer.flush(30)  # make sure the aborted records really reached the log
    producer.abort_transaction(30)

    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, f"committed-2-{i}".encode())
    producer.commit_transaction(30)

    committed = [f"committed-1-{i}" for i in range(5)] + [f"committed-2-{i}" for i in range(3)]
    assert read_all(bs, topic, isolation="read_committed") == committed
    # read_uncommitted sees the aborted records: they were written and then aborted, not lost
    uncommitted = read_all(bs, topic, isolation="read_uncommitted")
    assert sorted(uncommitted) == sorted(committed + [f"aborted-{i}" for i in range(5)])
