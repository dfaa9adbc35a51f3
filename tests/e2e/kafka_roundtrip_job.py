"""Tiny PyFlink DataStream job proving the Kafka connector (5.0.0-2.2) works with Flink 2.3.

Reads every record of --in-topic (bounded: earliest -> latest offsets at start; with --unbounded
it keeps reading, to be stopped with a savepoint and resumed), applies a Python map (runs in the
configured python.execution-mode: thread on our cluster), and writes to --out-topic with an
EXACTLY_ONCE KafkaSink (transactions committed on checkpoints; when a bounded input ends, the
final checkpoint commits the last one).

    scripts/cluster.sh submit -- -py tests/e2e/kafka_roundtrip_job.py \
        --bootstrap 127.0.0.1:9092 --in-topic a --out-topic b --txn-prefix p
    .venv/bin/python tests/e2e/kafka_roundtrip_job.py --local \
        --jar deps/flink-sql-connector-kafka-5.0.0-2.2.jar --bootstrap ... (same arguments)

--local runs on a MiniCluster inside this process (pipeline.jars = --jar, python.executable =
sys.executable).
"""

import argparse
import pathlib
import sys

from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)


def transform(value: str) -> str:
    return "roundtrip:" + value.upper()


def build(env: StreamExecutionEnvironment, args: argparse.Namespace) -> None:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.in_topic)
        .set_group_id(args.group)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
    )
    if not args.unbounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    source = builder.build()
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(args.out_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(args.txn_prefix)
        # must not exceed the broker's transaction.max.timeout.ms
        .set_property("transaction.timeout.ms", "600000")
        .build()
    )
    # explicit uids: the savepoint stop/resume test restores operator state by uid
    (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka-in")
        .uid("kafka-in")
        .map(transform, output_type=Types.STRING())
        .name("upper")
        .uid("upper")
        .sink_to(sink)
        .name("kafka-out")
        .uid("kafka-out")
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--in-topic", required=True)
    p.add_argument("--out-topic", required=True)
    p.add_argument("--txn-prefix", required=True)
    p.add_argument("--group", default="kafka-roundtrip")
    p.add_argument("--checkpoint-ms", type=int, default=1000)
    p.add_argument("--unbounded", action="store_true", help="never finish")
    p.add_argument("--local", action="store_true", help="run on an in-process MiniCluster")
    p.add_argument("--jar", help="connector jar for pipeline.jars (needed with --local)")
    args = p.parse_args(argv)

    config = Configuration()
    if args.local:
        config.set_string("python.executable", sys.executable)
        config.set_string("python.client.executable", sys.executable)
    if args.jar:
        config.set_string("pipeline.jars", pathlib.Path(args.jar).resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(1)
    env.enable_checkpointing(args.checkpoint_ms, CheckpointingMode.EXACTLY_ONCE)
    build(env, args)
    env.execute("kafka-roundtrip")


if __name__ == "__main__":
    main()
