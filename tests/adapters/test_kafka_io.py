"""The ``kafka`` configuration section and the wiring helpers of job/kafka_io.py (no JVM;
the connector itself runs in tests/e2e/test_job_kafka.py against a real broker and cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import job.kafka_io as kio
from job.config import ConfigError, load_config
from job.kafka_io import KafkaConfig, KafkaConnectorMissing, attach_kafka_sinks, output_topics


def problems_of(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    return info.value.problems


def test_defaults_are_valid_and_exactly_once() -> None:
    cfg = load_config().kafka
    assert cfg == KafkaConfig()
    assert cfg.delivery == "exactly_once"
    assert cfg.transaction_timeout_ms <= 900_000  # a default broker's transaction.max.timeout.ms
    assert not cfg.bounded


def test_set_nested_keys_and_pass_through_properties() -> None:
    cfg = load_config(
        overrides=[
            "source.type=kafka",
            "sink.type=kafka",
            "kafka.bootstrap_servers=b1:9092,b2:9093",
            "kafka.starting_offsets=earliest",
            "kafka.bounded=true",
            "kafka.delivery=at_least_once",
            "kafka.properties=[[security.protocol, SASL_SSL], [sasl.mechanism, PLAIN],"
            " [request.timeout.ms, 5000]]",
        ]
    )
    assert (cfg.source.type, cfg.sink.type) == ("kafka", "kafka")
    assert cfg.kafka.bootstrap_servers == "b1:9092,b2:9093"
    assert cfg.kafka.bounded is True
    assert cfg.kafka.properties == (
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "PLAIN"),
        ("request.timeout.ms", "5000"),
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        [
            "kafka.bootstrap_servers=nohost",
            "kafka.alerts_topic=anomaly.events",
            "kafka.late_topic=anomaly.scores",
            "kafka.dead_letter_topic=bad topic!",
            "kafka.starting_offsets=yesterday",
            "kafka.delivery=twice",
            "kafka.transaction_timeout_ms=10",
            "kafka.properties=[[group.id, x], [transaction.timeout.ms, '1'], [acks, all], [acks, '1']]",
        ]
    )
    text = "\n".join(problems)
    for expected in (
        "bootstrap_servers must be host:port",
        "alerts_topic must differ from events_topic",
        "scores_topic and late_topic are the same topic",
        "dead_letter_topic must be a Kafka topic name",
        "starting_offsets must be earliest, latest or committed",
        "delivery must be exactly_once, at_least_once or none",
        "transaction_timeout_ms must be >= 1000",
        "group.id is set by the job (use kafka.group_id)",
        "transaction.timeout.ms is set by the job (use kafka.transaction_timeout_ms)",
        "acks is given twice",
    ):
        assert expected in text, (expected, problems)
    assert all(p.startswith("kafka: ") for p in problems)


def test_exactly_once_needs_a_transactional_id_prefix() -> None:
    with pytest.raises(ValueError, match="transactional_id_prefix is required"):
        KafkaConfig(transactional_id_prefix="")
    KafkaConfig(transactional_id_prefix="", delivery="none")  # fine without transactions


def test_source_and_sink_types() -> None:
    assert "source: type must be file, demo or kafka, got 'mq'" in problems_of(["source.type=mq"])
    assert "sink: type must be file or kafka, got 'mq'" in problems_of(["sink.type=mq"])


def test_every_output_of_the_job_has_a_topic_key() -> None:
    topics = output_topics(KafkaConfig())
    for output in ("alerts", "dead_letter", "late", "scores", "drift", "summaries"):
        assert f"{output}_topic" in topics
    assert "events_topic" not in topics
    assert len(set(topics.values())) == len(topics)


def test_an_output_without_a_topic_key_is_an_error_not_dropped() -> None:
    with pytest.raises(ValueError, match="no Kafka topic for output.*mystery"):
        attach_kafka_sinks({"alerts": object(), "mystery": object()}, KafkaConfig())


def test_connector_jar_from_the_environment_or_deps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kio.CONNECTOR_ENV, raising=False)
    assert kio.connector_jar(tmp_path) is None
    (tmp_path / "deps").mkdir()
    jar = tmp_path / "deps" / "flink-sql-connector-kafka-5.0.0-2.2.jar"
    jar.write_bytes(b"")
    assert kio.connector_jar(tmp_path) == jar.resolve()
    monkeypatch.setenv(kio.CONNECTOR_ENV, str(tmp_path / "missing.jar"))
    with pytest.raises(KafkaConnectorMissing, match="is neither a file nor a folder"):
        kio.connector_jar(tmp_path)
    # a folder: the newest connector jar in it, none when it holds none
    other = tmp_path / "jars"
    other.mkdir()
    monkeypatch.setenv(kio.CONNECTOR_ENV, str(other))
    assert kio.connector_dir(tmp_path) == other
    assert kio.connector_jar(tmp_path) is None
    newer = other / "flink-sql-connector-kafka-5.1.0-2.3.jar"
    newer.write_bytes(b"")
    assert kio.connector_jar(tmp_path) == newer.resolve()


def test_missing_connector_says_to_run_make_jars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kio, "_configured_jars", lambda env: [])
    monkeypatch.setattr(kio, "connector_jar", lambda: None)
    monkeypatch.setattr(kio, "_connector_on_classpath", lambda: False)
    with pytest.raises(KafkaConnectorMissing, match="run `make jars`"):
        kio.ensure_connector(object())


def test_connector_is_shipped_once(monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[str] = []

    class Env:
        def add_jars(self, *jars: str) -> None:
            added.extend(jars)

    jar = Path("/x/deps/flink-sql-connector-kafka-5.0.0-2.2.jar")
    monkeypatch.setattr(kio, "connector_jar", lambda: jar)
    monkeypatch.setattr(kio, "_configured_jars", lambda env: [])
    kio.ensure_connector(Env())
    assert added == [jar.as_uri()]
    # already in pipeline.jars (an earlier call, or `flink run -j <connector jar>`)
    monkeypatch.setattr(kio, "_configured_jars", lambda env: [jar.as_uri()])
    kio.ensure_connector(Env())
    assert added == [jar.as_uri()]


def test_main_py_runs_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """`flink run -py job/main.py ARGS` is `python -m job run --set sink.writer=flink ARGS`:
    on a cluster Flink writes the files, and the user's own --set comes after (and wins)."""
    import runpy

    import job.cli

    seen: list[Any] = []
    monkeypatch.setattr(job.cli, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr("sys.argv", ["job/main.py", "--set", "sink.type=kafka"])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(Path(job.cli.__file__).parent / "main.py"), run_name="__main__")
    assert info.value.code == 0
    assert seen == [["run", "--set", "sink.writer=flink", "--set", "sink.type=kafka"]]


class _Checkpointing:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def get_checkpoint_config(self) -> Any:
        return type("C", (), {"is_checkpointing_enabled": lambda _self: self.enabled})()


class _Stream:
    def __init__(self, env: Any) -> None:
        self.env = env

    def get_execution_environment(self) -> Any:
        return self.env


def test_exactly_once_without_checkpointing_is_refused_for_an_unbounded_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It would never commit: consumers reading committed records would wait forever."""
    off = {"alerts": _Stream(_Checkpointing(False))}
    with pytest.raises(ValueError, match="checkpointing is off"):
        attach_kafka_sinks(off, KafkaConfig())
    # a bounded input commits once at its end; other guarantees do not need checkpoints
    class PastTheCheck(Exception):
        pass

    def connector(env: Any) -> None:
        raise PastTheCheck

    monkeypatch.setattr(kio, "ensure_connector", connector)
    for outputs, cfg, bounded in (
        (off, KafkaConfig(), True),
        (off, KafkaConfig(delivery="at_least_once"), False),
        ({"alerts": _Stream(_Checkpointing(True))}, KafkaConfig(), False),
    ):
        with pytest.raises(PastTheCheck):  # got past the check, on to the connector
            attach_kafka_sinks(outputs, cfg, bounded_input=bounded)


def test_client_secrets_from_a_properties_file_and_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No secret on the command line: a properties file the submitting user can read, and
    ${env:NAME} references; `python -m job config` prints secret values masked."""
    props = tmp_path / "client.properties"
    props.write_text(
        "# SASL over TLS\nsecurity.protocol=SASL_SSL\nsasl.mechanism: SCRAM-SHA-512\n"
        'sasl.jaas.config=ScramLoginModule required username="svc" password="${env:K_PASS}";\n'
        "ssl.truststore.location=/etc/kafka/ca.jks\n"
    )
    monkeypatch.setenv("K_PASS", "s3cr3t-value")
    cfg = load_config(None, [f"kafka.properties_file={props}",
                             "kafka.properties=[[security.protocol, SASL_PLAINTEXT]]"])
    got = dict(cfg.kafka.properties)
    assert got["security.protocol"] == "SASL_PLAINTEXT"  # the explicit key wins
    assert got["sasl.mechanism"] == "SCRAM-SHA-512"
    assert got["sasl.jaas.config"].endswith('password="s3cr3t-value";')
    from job.cli import main

    assert main(["config", "--set", f"kafka.properties_file={props}"]) == 0
    printed = capsys.readouterr().out
    assert "s3cr3t-value" not in printed and "*****" in printed
    assert "/etc/kafka/ca.jks" in printed  # not a secret: shown


def test_a_missing_variable_or_file_is_named_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["kafka.properties=[[sasl.jaas.config, 'x password=${env:K_NOT_SET}']]",
                           f"kafka.properties_file={tmp_path / 'absent.properties'}"])
    text = str(err.value)
    assert "sasl.jaas.config: environment variable K_NOT_SET is not set" in text
    assert "absent.properties" in text and "No such file" in text
    bad = tmp_path / "bad.properties"
    bad.write_text("just words\n")
    with pytest.raises(ConfigError, match="not a key=value line"):
        load_config(None, [f"kafka.properties_file={bad}"])
    reserved = tmp_path / "reserved.properties"
    reserved.write_text("bootstrap.servers=elsewhere:9092\n")
    with pytest.raises(ConfigError, match="use kafka.bootstrap_servers"):
        load_config(None, [f"kafka.properties_file={reserved}"])
