"""Small confluent-kafka helpers for the e2e tests (bounded waits, no sleeps)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def create_topics(bootstrap: str, *topics: str, partitions: int = 1, timeout: float = 30,
                  config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1, config=config or {})
         for t in topics],
        operation_timeout=timeout, request_timeout=timeout,
    )
    for f in futures.values():
        f.result(timeout=timeout)


def read_all(
    bootstrap: str,
    topic: str,
    *,
    isolation: str = "read_committed",
    expect: int | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Read a topic from the beginning of every partition up to its end offset (as seen when
    polled), or until `expect` values arrived; bounded by `timeout`. Values decoded as UTF-8."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("e2e-reader"),
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        parts = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + timeout
        values: list[str] = []
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    raise KafkaException(msg.error())
                values.append(msg.value().decode())
                continue
            if expect is not None:
                if len(values) >= expect:
                    break
            else:
                # nothing more to read when every partition's position reached its end offset
                # (for read_committed the last stable offset; control records count as read)
                positions = consumer.position([TopicPartition(topic, p) for p in parts])
                ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5,
                                                       cached=False)[1] for p in parts]
                pairs = zip(positions, ends, strict=True)
                if all(tp.offset >= 0 and tp.offset >= end for tp, end in pairs):
                    break
        return values
    finally:
        consumer.close()
