"""The single-node KRaft broker of scripts/kafka.sh supports transactions end to end and keeps
dated records."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

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


def test_dated_records_are_kept_by_size_not_age(kafka_broker):
    """The job stamps each output record with its event time, and the demo and the tests
    replay dated events: under an age limit the broker would delete those outputs at its next
    retention check, minutes after they were written (seen: alerts of a rescaling test gone
    before they were read). A topic on this broker keeps them, bounded by size only."""
    bs = kafka_broker.bootstrap
    topic = unique("dated")
    create_topics(bs, topic)
    dated_ms = 1_577_836_800_000  # 2020-01-01, years older than any default retention
    producer = Producer({"bootstrap.servers": bs})
    producer.produce(topic, b"dated", timestamp=dated_ms)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bs, "group.id": unique("e2e-dated"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msgs = consumer.consume(1, timeout=30)
    finally:
        consumer.close()
    assert [(m.value(), m.timestamp()[1]) for m in msgs] == [(b"dated", dated_ms)]

    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": bs})
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["retention.ms"].value == "-1"
    assert 0 < int(configs["retention.bytes"].value) <= 1 << 30
