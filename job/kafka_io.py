"""Kafka in and out: the job's production source and sinks (Flink Kafka connector 5.0).

- :class:`KafkaConfig`: the ``kafka`` section of the configuration (topics, consumer group,
  starting offsets, delivery guarantee, transactions, pass-through client properties).
- :func:`kafka_source`: raw JSON lines from ``events_topic`` (a ``KafkaSource`` with a
  value-only string deserializer), with watermarks made per partition in the source
  (job/pipeline.py ``line_watermarks``: a line without a readable event time never moves
  them) when the job's jar is built.
- :func:`attach_kafka_sinks`: one ``KafkaSink`` per output stream (``alerts``,
  ``dead_letter``, ``late``, ``scores``, ...) to ``<output>_topic``. Every record's key is
  its ``entity`` (:func:`entity_key_schema`), so one entity's records stay in one partition,
  in the order the job wrote them, whatever the topics' partition counts; a record with no
  entity (a dead letter of a line that named none) has no key.

Exactly-once end to end (``delivery: exactly_once``, the default) needs checkpointing: the
source's offsets and the detectors' state are checkpointed together and each sink writes in a
Kafka transaction committed when the checkpoint completes. Consumers of the output topics must
read with ``isolation.level=read_committed`` (otherwise they also see records of transactions
that a failure aborted). Outputs then appear once per checkpoint interval.

Each sink has its own transactional-id prefix, ``<transactional_id_prefix>-<output>``: keep
it stable across restarts and savepoint resumes (Flink aborts the lingering transactions of
its prefix on recovery), and distinct between jobs writing to the same cluster.

The connector jar (``deps/flink-sql-connector-kafka-*.jar``, fetched by ``make jars``) is
added to ``pipeline.jars``; ``FLINK_KAFKA_CONNECTOR_JAR`` names another file (or a folder
holding one), and a cluster whose ``lib/`` already holds the connector (the Docker image)
needs no jar at all.

Before the job is submitted, :func:`preflight` checks from the client that a broker answers
and that the input topic exists (``kafka.preflight``): a job submitted against an unreachable
broker would otherwise only fail a minute later, deep in a Java stack trace.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.jvm import configured_jars as _configured_jars

__all__ = [
    "DELIVERY",
    "KafkaConfig",
    "KafkaConnectorMissing",
    "KafkaPreflightError",
    "attach_kafka_sinks",
    "connector_jar",
    "ensure_connector",
    "kafka_source",
    "output_topics",
    "preflight",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONNECTOR_GLOB = "flink-sql-connector-kafka-*.jar"
CONNECTOR_ENV = "FLINK_KAFKA_CONNECTOR_JAR"

DELIVERY = ("exactly_once", "at_least_once", "none")
STARTING_OFFSETS = ("earliest", "latest", "committed")
# Kafka's own rule for topic names.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Client properties that have a key of their own in this section (set them there).
_RESERVED = {
    "bootstrap.servers": "bootstrap_servers",
    "group.id": "group_id",
    "transactional.id": "transactional_id_prefix",
    "transaction.timeout.ms": "transaction_timeout_ms",
    "key.deserializer": None,
    "value.deserializer": None,
    "key.serializer": None,
    "value.serializer": None,
}
# A broker's default transaction.max.timeout.ms (15 min): a producer asking for more is
# refused by such a broker when it starts its first transaction.
BROKER_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS = 900_000
# How long the pre-flight check waits for a broker (each bootstrap server, then the topics).
PREFLIGHT_TIMEOUT_S = 10.0


class KafkaConnectorMissing(ValueError):
    """The Kafka connector jar is neither in ``deps/`` nor on the Flink classpath."""


class KafkaPreflightError(ValueError):
    """No broker of ``bootstrap_servers`` answers the client, or the input topic is missing."""


@dataclass(frozen=True)
class KafkaConfig:
    """Kafka source and sinks (``source.type: kafka`` / ``sink.type: kafka``).

    Parameters
    ----------
    bootstrap_servers
        ``host:port[,host:port...]`` of the brokers.
    events_topic
        Input: one JSON event per record value (see the event contract).
    read_verdicts
        Also read operator verdicts from ``verdicts_topic`` (one JSON verdict per record,
        ``{alert_id, entity, verdict, reason, ts}``); they reach the entity's detector by key.
    verdicts_topic
        Input topic of operator verdicts (with ``read_verdicts``).
    read_control, control_topic
        Read live configuration changes (``udfs/core/live.py``) from ``control_topic``.
    alerts_topic, drift_topic, health_topic, dead_letter_topic, late_topic, scores_topic, summaries_topic
        Output topics, one per output stream of the job (an output the job does not produce
        leaves its topic untouched). ``scores`` needs ``sink.emit_scores``, ``summaries``
        needs ``summaries.enabled``.
    group_id
        Consumer group of the source (offsets are committed to it on checkpoints, for
        monitoring and for ``starting_offsets: committed``; recovery uses the checkpoint).
    starting_offsets
        Where a job that does not restore a checkpoint or savepoint starts reading:
        ``earliest``, ``latest``, or ``committed`` (the group's committed offsets, earliest
        where the group has none).
    bounded
        Stop at the latest offsets seen at start (tests and backfills); the job then ends.
    delivery
        ``exactly_once`` (transactions committed on checkpoints; needs checkpointing),
        ``at_least_once`` (flush on checkpoints: duplicates after a failure) or ``none``.
    transactional_id_prefix
        Prefix of the sinks' transactional ids (``exactly_once``); each output appends
        ``-<output>``. Stable across restarts, unique per job on a Kafka cluster.
    transaction_timeout_ms
        ``transaction.timeout.ms`` of the sinks' producers: longer than a checkpoint interval
        plus the longest expected recovery (an open transaction the broker times out loses
        its records), and at most the broker's ``transaction.max.timeout.ms`` (15 min by
        default, the default here).
    properties
        ``[[key, value], ...]`` passed to the source's consumer and the sinks' producers
        (``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config``, ``ssl.*``, ...).
        A value may name environment variables of the process that loads the configuration
        (the client that submits the job), ``${env:NAME}``, so that no secret sits on a
        command line or in a file under version control; ``python -m job config`` prints
        secret values (``*password*``, ``*secret*``, ``sasl.jaas.config``, ...) masked.
    properties_file
        A Java-style properties file (``key=value`` lines, ``#`` comments) of client
        properties read by the process that loads the configuration, e.g. a file only the
        submitting user can read holding ``sasl.jaas.config``; keys also in ``properties``
        take the value given there. ``${env:NAME}`` works in it too.
    preflight
        Before submitting the job, check from the client that a broker of
        ``bootstrap_servers`` accepts a connection and, when the source is Kafka, that
        ``events_topic`` exists (the topic check needs a plaintext listener). Turn it off
        when only the Flink cluster, not the machine submitting the job, can reach Kafka.
    """

    bootstrap_servers: str = "localhost:9092"
    events_topic: str = "anomaly.events"
    read_verdicts: bool = False
    verdicts_topic: str = "anomaly.verdicts"
    read_control: bool = False
    control_topic: str = "anomaly.control"
    alerts_topic: str = "anomaly.alerts"
    drift_topic: str = "anomaly.drift"
    health_topic: str = "anomaly.health"
    dead_letter_topic: str = "anomaly.dead-letter"
    late_topic: str = "anomaly.late"
    scores_topic: str = "anomaly.scores"
    summaries_topic: str = "anomaly.summaries"
    group_id: str = "anomaly-detection"
    starting_offsets: str = "committed"
    bounded: bool = False
    delivery: str = "exactly_once"
    transactional_id_prefix: str = "anomaly-detection"
    transaction_timeout_ms: int = BROKER_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS
    properties: tuple[tuple[str, str], ...] = ()
    properties_file: str = ""
    preflight: bool = True

    def __post_init__(self) -> None:
        problems: list[str] = []
        object.__setattr__(self, "properties", _resolved_properties(self, problems))
        servers = [s.strip() for s in self.bootstrap_servers.split(",")]
        if not self.bootstrap_servers.strip() or not all(
            re.fullmatch(r"[^\s:]+:\d{1,5}", s) for s in servers
        ):
            problems.append(
                f"bootstrap_servers must be host:port[,host:port...], got {self.bootstrap_servers!r}"
            )
        topics = output_topics(self)
        for key, topic in [("events_topic", self.events_topic), *topics.items()]:
            if not _TOPIC_RE.match(topic) or topic in (".", ".."):
                problems.append(
                    f"{key} must be a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got {topic!r}"
                )
        seen: dict[str, str] = {}
        for key, topic in topics.items():
            if topic == self.events_topic:
                problems.append(f"{key} must differ from events_topic ({topic!r}): a loop")
            elif topic in seen:
                problems.append(f"{key} and {seen[topic]} are the same topic {topic!r}")
            seen.setdefault(topic, key)
        if not self.group_id.strip():
            problems.append("group_id must not be empty")
        if self.starting_offsets not in STARTING_OFFSETS:
            problems.append(
                f"starting_offsets must be earliest, latest or committed, got {self.starting_offsets!r}"
            )
        if self.delivery not in DELIVERY:
            problems.append(
                f"delivery must be exactly_once, at_least_once or none, got {self.delivery!r}"
            )
        if self.delivery == "exactly_once" and not self.transactional_id_prefix.strip():
            problems.append("transactional_id_prefix is required when delivery is exactly_once")
        if len(self.transactional_id_prefix.encode()) > 6000:
            problems.append("transactional_id_prefix must be at most 6000 bytes")
        if self.transaction_timeout_ms < 1_000:
            problems.append(
                f"transaction_timeout_ms must be >= 1000 (and at most the broker's"
                f" transaction.max.timeout.ms), got {self.transaction_timeout_ms}"
            )
        keys: set[str] = set()
        for i, pair in enumerate(self.properties):
            if len(pair) != 2:
                problems.append(f"properties[{i}] must be [key, value], got {pair!r}")
                continue
            key, _value = pair
            if not key.strip():
                problems.append(f"properties[{i}]: empty key")
            elif key in _RESERVED:
                own = _RESERVED[key]
                problems.append(
                    f"properties[{i}]: {key} is set by the job"
                    + (f" (use kafka.{own})" if own else " (records are UTF-8 strings)")
                )
            elif key in keys:
                problems.append(f"properties[{i}]: {key} is given twice")
            keys.add(key)
        if problems:
            raise ValueError("; ".join(problems))


_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEY = re.compile(r"password|secret|jaas|token|credential|ssl\.key\.|\.key$", re.I)


def read_properties(path: str) -> list[tuple[str, str]]:
    """``key=value`` (or ``key: value``) lines of a Java-style properties file, in order;
    blank lines and ``#``/``!`` comments skipped (no line continuations)."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if m is None:
            raise ValueError(f"not a key=value line: {line[:40]!r}")
        pairs.append((m.group(1), m.group(2)))
    return pairs


def _resolved_properties(cfg: KafkaConfig, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """``properties``, then the keys of ``properties_file`` it lacks, ``${env:NAME}`` replaced."""
    pairs = [tuple(p) for p in cfg.properties]
    if cfg.properties_file:
        try:
            given = {p[0] for p in pairs if len(p) == 2}
            pairs += [kv for kv in read_properties(cfg.properties_file) if kv[0] not in given]
        except (OSError, ValueError) as exc:
            problems.append(f"properties_file {cfg.properties_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}")
    out = []
    for pair in pairs:
        if len(pair) == 2 and isinstance(pair[1], str):
            key, value = pair
            for name in _ENV_REF.findall(value):
                if name not in os.environ:
                    problems.append(f"properties {key}: environment variable {name} is not set")
            value = _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)
            pair = (key, value)
        out.append(pair)
    return tuple(out)  # type: ignore[arg-type]


def is_secret(key: str) -> bool:
    """Whether a client property holds a secret (masked when the configuration is printed).

    >>> [is_secret(k) for k in ("sasl.jaas.config", "ssl.keystore.password", "ssl.key.password",
    ...                         "security.protocol", "ssl.truststore.location")]
    [True, True, True, False, False]
    """
    return bool(_SECRET_KEY.search(key))


def output_topics(cfg: KafkaConfig) -> dict[str, str]:
    """``{"<output>_topic": topic}`` for every output topic key of ``cfg``."""
    return {
        name: getattr(cfg, name)
        for name in cfg.__dataclass_fields__
        if name.endswith("_topic") and name != "events_topic"
    }


# -- the connector jar ---------------------------------------------------------------------


def connector_dir(root: Path = PROJECT_ROOT) -> Path:
    """Where the connector jar is looked for: ``deps/``, or ``$FLINK_KAFKA_CONNECTOR_JAR``
    when it names a folder."""
    named = os.environ.get(CONNECTOR_ENV)
    return Path(named) if named and Path(named).is_dir() else root / "deps"


def connector_jar(root: Path = PROJECT_ROOT) -> Path | None:
    """The connector jar to ship with the job: ``$FLINK_KAFKA_CONNECTOR_JAR`` (a jar, or a
    folder holding one) or the newest ``deps/flink-sql-connector-kafka-*.jar``."""
    named = os.environ.get(CONNECTOR_ENV)
    if named and not Path(named).is_dir():
        path = Path(named)
        if not path.is_file():
            raise KafkaConnectorMissing(
                f"{CONNECTOR_ENV}={named} is neither a file nor a folder: point it at"
                f" {CONNECTOR_GLOB} (or a folder holding one) or unset it"
            )
        return path.resolve()
    found = sorted(connector_dir(root).glob(CONNECTOR_GLOB))
    return found[-1].resolve() if found else None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _connector_on_classpath() -> bool:
    from py4j.java_gateway import JavaClass
    from pyflink.java_gateway import get_gateway

    cls = get_gateway().jvm.org.apache.flink.connector.kafka.source.KafkaSource
    return isinstance(cls, JavaClass)


def ensure_connector(env: Any) -> None:
    """Ship the connector jar with the job (once), or check the classpath already has it."""
    if any("connector-kafka" in Path(j).name for j in _configured_jars(env)):
        return  # shipped already (an earlier call, or `flink run -j <connector jar>`)
    jar = connector_jar()
    if jar is not None:
        env.add_jars(jar.as_uri())
        return
    if _connector_on_classpath():
        return  # e.g. the Docker image keeps it in /opt/flink/lib
    raise KafkaConnectorMissing(
        f"the Kafka connector jar is missing ({_shown(connector_dir())}/{CONNECTOR_GLOB}):"
        f" run `make jars`, or point {CONNECTOR_ENV} at the jar"
    )


# -- the pre-flight check ------------------------------------------------------------------


def _reason(exc: OSError, timeout_s: float) -> str:
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or exc.__class__.__name__


def _plaintext(cfg: KafkaConfig) -> bool:
    protocol = dict(cfg.properties).get("security.protocol", "PLAINTEXT")
    return protocol.upper() == "PLAINTEXT"


def preflight(
    cfg: KafkaConfig, *, events_topic: bool, timeout_s: float = PREFLIGHT_TIMEOUT_S
) -> None:
    """Check, from the client, that Kafka is there before the job is submitted.

    A TCP connection to each bootstrap server in turn until one accepts (each waits at most
    ``timeout_s``); then, when ``events_topic`` and the listener is plaintext (the client
    cannot reuse the Java client's SASL/SSL properties) and confluent-kafka is installed,
    that ``cfg.events_topic`` is among the cluster's topics. Raise
    :class:`KafkaPreflightError` with one line saying what to do otherwise.
    """
    skip = "kafka.preflight=false skips this check"
    servers = [s.strip() for s in cfg.bootstrap_servers.split(",")]
    refused: list[str] = []
    for server in servers:
        host, port = server.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                break
        except OSError as exc:
            reason = _reason(exc, timeout_s)
            refused.append(reason if len(servers) == 1 else f"{server}: {reason}")
    else:
        raise KafkaPreflightError(
            f"cannot reach Kafka at {cfg.bootstrap_servers} ({'; '.join(refused)}): start the"
            f" broker (make kafka-start) or fix kafka.bootstrap_servers ({skip})"
        )
    if not events_topic or not _plaintext(cfg):
        return
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap_servers, "log_level": 0})
    try:
        topics = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise KafkaPreflightError(
            f"Kafka at {cfg.bootstrap_servers} accepts connections but listed no topics within"
            f" {timeout_s:g} s ({exc.args[0].str()}): check kafka.bootstrap_servers and the"
            f" brokers' advertised listeners ({skip})"
        ) from None
    inputs = [("events_topic", cfg.events_topic)]
    if cfg.read_verdicts:
        inputs.append(("verdicts_topic", cfg.verdicts_topic))
    if cfg.read_control:
        inputs.append(("control_topic", cfg.control_topic))
    for key, topic in inputs:
        if topic not in topics:
            raise KafkaPreflightError(
                f"the input topic {topic} does not exist on {cfg.bootstrap_servers}:"
                f" create it, or fix kafka.{key}"
            )


# -- source and sinks ----------------------------------------------------------------------


def kafka_source(env: Any, cfg: KafkaConfig, control: bool = False, watermarks: Any = None) -> Any:
    """Raw record values of ``cfg.events_topic`` (and ``verdicts_topic`` with
    ``read_verdicts``: the detect operator tells verdicts from events) as a
    ``DataStream[str]``, with the watermarks of ``watermarks`` (a ``WatermarkStrategy``,
    generated per partition: job/pipeline.py ``line_watermarks``) or none. With
    ``control``: the ``control_topic`` instead, always from its earliest offset (a fresh
    start replays every change; a restore keeps the live configuration in broadcast state
    and the offsets in the checkpoint).

    Reads with ``isolation.level=read_committed`` (records of aborted upstream transactions
    are skipped; ``properties`` can override it).
    """
    ensure_connector(env)
    from pyflink.common import WatermarkStrategy
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetResetStrategy,
        KafkaOffsetsInitializer,
        KafkaSource,
    )

    starting = {
        "earliest": KafkaOffsetsInitializer.earliest,
        "latest": KafkaOffsetsInitializer.latest,
        "committed": lambda: KafkaOffsetsInitializer.committed_offsets(
            KafkaOffsetResetStrategy.EARLIEST
        ),
    }["earliest" if control else cfg.starting_offsets]()
    if control:
        topics = [cfg.control_topic]
    elif cfg.read_verdicts:
        topics = [cfg.events_topic, cfg.verdicts_topic]
    else:
        topics = [cfg.events_topic]
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(cfg.bootstrap_servers)
        .set_topics(*topics)
        .set_group_id(cfg.group_id)
        .set_starting_offsets(starting)
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
    )
    for key, value in cfg.properties:
        builder = builder.set_property(key, value)
    if cfg.bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    name, uid = ("control-kafka", "source-control-kafka") if control else ("events-kafka", "source-kafka")
    strategy = WatermarkStrategy.no_watermarks() if watermarks is None else watermarks
    return env.from_source(builder.build(), strategy, name).uid(uid)


def entity_key_schema() -> Any:
    """The key serializer of every output record: its ``entity``
    (``udfs/jvm/flinkanomaly/EntityKey.java``), or None when the job's JVM operators were not
    built (no JDK: the records then have no key)."""
    from pyflink.common.serialization import SerializationSchema
    from pyflink.java_gateway import get_gateway

    from job.jvm import operators_jar

    if operators_jar() is None:
        return None
    return SerializationSchema(j_serialization_schema=get_gateway().jvm.flinkanomaly.EntityKey())


def attach_kafka_sinks(
    outputs: Mapping[str, Any], cfg: KafkaConfig, bounded_input: bool = False
) -> dict[str, str]:
    """Write each output stream (JSON strings) to its topic; return ``{output: topic}``.

    Every output needs a ``<output>_topic`` key: an output without one is an error rather
    than dropped. Sinks are ``.uid("sink-kafka-<output>")`` (savepoint contract).

    ``exactly_once`` commits on checkpoints: with checkpointing off (neither
    ``execution.checkpoint_interval_ms`` nor the cluster's ``execution.checkpointing.interval``)
    an unbounded job would never commit anything, so that is an error; a bounded input
    (``bounded_input``) commits once, at its end.
    """
    if not outputs:
        return {}
    missing = [n for n in outputs if not hasattr(cfg, f"{n}_topic")]
    if missing:
        raise ValueError(
            f"no Kafka topic for output(s) {', '.join(missing)}: add kafka.<output>_topic"
        )
    env = next(iter(outputs.values())).get_execution_environment()
    if (
        cfg.delivery == "exactly_once"
        and not bounded_input
        and not env.get_checkpoint_config().is_checkpointing_enabled()
    ):
        raise ValueError(
            "kafka.delivery=exactly_once commits on checkpoints and checkpointing is off: set"
            " execution.checkpoint_interval_ms (or execution.checkpointing.interval in the"
            " cluster's config.yaml), or read a bounded input (kafka.bounded=true)"
        )
    ensure_connector(env)
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    guarantee = {
        "exactly_once": DeliveryGuarantee.EXACTLY_ONCE,
        "at_least_once": DeliveryGuarantee.AT_LEAST_ONCE,
        "none": DeliveryGuarantee.NONE,
    }[cfg.delivery]
    topics: dict[str, str] = {}
    key = entity_key_schema()
    for name, stream in outputs.items():
        topic = getattr(cfg, f"{name}_topic")
        serializer = (
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(SimpleStringSchema())
        )
        if key is not None:
            serializer = serializer.set_key_serialization_schema(key)
        builder = (
            KafkaSink.builder()
            .set_bootstrap_servers(cfg.bootstrap_servers)
            .set_record_serializer(serializer.build())
            .set_delivery_guarantee(guarantee)
        )
        if cfg.delivery == "exactly_once":
            builder = builder.set_transactional_id_prefix(
                f"{cfg.transactional_id_prefix}-{name}"
            ).set_property("transaction.timeout.ms", str(cfg.transaction_timeout_ms))
        for key, value in cfg.properties:
            builder = builder.set_property(key, value)
        stream.sink_to(builder.build()).name(f"kafka-{name}").uid(f"sink-kafka-{name}")
        topics[name] = topic
    return topics
