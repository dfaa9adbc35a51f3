"""Errors a user can cause through ``python -m job`` end with one line saying what is wrong
and what to do, exit code 2, and no stack trace (Python's or Java's).

Each case runs the real command line in a subprocess. The Kafka cases start the JVM (the
connector check asks it), a few seconds each, but submit no job: the checks run first. The
pre-flight check itself is also tested against a port that is not Kafka and a fake admin
client here, and against a real broker in tests/e2e/test_preflight.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import job.kafka_io as kio
from job.cli import _first_words
from job.kafka_io import KafkaConfig, KafkaPreflightError
from tests import ROOT

PYTHON = ROOT / ".venv" / "bin" / "python"
TRACES = ("Traceback", "Exception", "at org.apache", "py4j")


def job(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = str(PYTHON) if PYTHON.exists() else sys.executable
    return subprocess.run(
        [exe, "-m", "job", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,  # a guard: the checks answer in seconds, a submitted job would hang
    )


def last_line_of_a_clean_failure(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    for trace in TRACES:
        assert trace not in output, output
    return proc.stderr.splitlines()[-1]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Kafka: the connector jar, the broker, the input topic ---------------------------------


@pytest.mark.minicluster  # starts the JVM (the connector check asks it)
@pytest.mark.parametrize("kafka_end", ["source", "sink"])
def test_a_missing_connector_jar_says_to_run_make_jars(kafka_end: str, tmp_path: Path) -> None:
    empty = tmp_path / "jars"
    empty.mkdir()
    proc = job(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--set",
        f"{kafka_end}.type=kafka",
        "--set",
        f"kafka.bootstrap_servers=127.0.0.1:{free_port()}",
        env={kio.CONNECTOR_ENV: str(empty)},
    )
    assert last_line_of_a_clean_failure(proc) == (
        f"error: the Kafka connector jar is missing ({empty}/flink-sql-connector-kafka-*.jar):"
        f" run `make jars`, or point {kio.CONNECTOR_ENV} at the jar"
    )


@pytest.mark.minicluster  # starts the JVM (the connector check asks it)
@pytest.mark.parametrize("kafka_end", ["source", "sink"])
def test_an_unreachable_broker_is_named_before_the_job_is_submitted(
    kafka_end: str, tmp_path: Path
) -> None:
    servers = f"127.0.0.1:{free_port()}"
    proc = job(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--set",
        f"{kafka_end}.type=kafka",
        "--set",
        f"kafka.bootstrap_servers={servers}",
    )
    assert last_line_of_a_clean_failure(proc) == (
        f"error: cannot reach Kafka at {servers} (connection refused): start the broker"
        " (make kafka-start) or fix kafka.bootstrap_servers"
        " (kafka.preflight=false skips this check)"
    )


def test_preflight_tries_every_bootstrap_server_and_names_each() -> None:
    a, b = free_port(), free_port()
    cfg = KafkaConfig(bootstrap_servers=f"127.0.0.1:{a},127.0.0.1:{b}")
    with pytest.raises(KafkaPreflightError) as info:
        kio.preflight(cfg, events_topic=True, timeout_s=5)
    assert (
        f"cannot reach Kafka at 127.0.0.1:{a},127.0.0.1:{b}"
        f" (127.0.0.1:{a}: connection refused; 127.0.0.1:{b}: connection refused)"
    ) in str(info.value)


def test_preflight_names_a_listener_that_is_not_kafka() -> None:
    """It accepts the connection but never answers a metadata request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        cfg = KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}")
        with pytest.raises(KafkaPreflightError) as info:
            kio.preflight(cfg, events_topic=True, timeout_s=1)
    message = str(info.value)
    assert message.startswith(
        f"Kafka at 127.0.0.1:{port} accepts connections but listed no topics within 1 s ("
    )
    assert message.endswith(
        "): check kafka.bootstrap_servers and the brokers' advertised listeners"
        " (kafka.preflight=false skips this check)"
    )


class _FakeAdmin:
    """``confluent_kafka.admin.AdminClient`` with a fixed set of topics."""

    topics = {"anomaly.events": object(), "other": object()}
    made: list[dict[str, object]] = []

    def __init__(self, conf: dict[str, object]) -> None:
        self.made.append(conf)

    def list_topics(self, timeout: float) -> object:
        return type("Metadata", (), {"topics": self.topics})()


@pytest.fixture
def listening_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A port that accepts connections, and the fake admin client in place of the real one."""
    import confluent_kafka.admin

    _FakeAdmin.made = []
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", _FakeAdmin)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_preflight_says_when_the_input_topic_does_not_exist(listening_broker: str) -> None:
    cfg = KafkaConfig(bootstrap_servers=listening_broker, events_topic="typo.events")
    with pytest.raises(KafkaPreflightError) as info:
        kio.preflight(cfg, events_topic=True)
    assert str(info.value) == (
        f"the input topic typo.events does not exist on {listening_broker}:"
        " create it, or fix kafka.events_topic"
    )
    kio.preflight(KafkaConfig(bootstrap_servers=listening_broker), events_topic=True)
    assert _FakeAdmin.made == [{"bootstrap.servers": listening_broker, "log_level": 0}] * 2


def test_preflight_checks_topics_only_when_reading_kafka_in_plaintext(
    listening_broker: str,
) -> None:
    """A Kafka sink creates its topics; SASL/SSL settings are the Java client's, not ours."""
    missing = KafkaConfig(bootstrap_servers=listening_broker, events_topic="typo.events")
    kio.preflight(missing, events_topic=False)
    sasl = KafkaConfig(
        bootstrap_servers=listening_broker,
        events_topic="typo.events",
        properties=(("security.protocol", "SASL_SSL"),),
    )
    kio.preflight(sasl, events_topic=True)
    assert _FakeAdmin.made == []


def test_preflight_is_a_config_key_on_by_default() -> None:
    from job.config import load_config

    assert load_config().kafka.preflight is True
    assert load_config(overrides=["kafka.preflight=false"]).kafka.preflight is False


# -- paths ---------------------------------------------------------------------------------


def test_run_with_a_missing_input_file(tmp_path: Path) -> None:
    proc = job("run", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out"))
    assert last_line_of_a_clean_failure(proc) == (
        f"error: input file not found: {tmp_path / 'nope.jsonl'}: check the path and run again"
    )


def test_an_output_folder_under_a_file(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"entity": "a", "ts": 1767225600000, "metrics": {"x": 1.0}}\n')
    (tmp_path / "taken").write_text("")
    proc = job("replay", "--input", str(events), "--out", str(tmp_path / "taken" / "out"))
    assert last_line_of_a_clean_failure(proc) == (
        f"error: Not a directory: {tmp_path / 'taken' / 'out'}: check the path and run again"
    )


def test_nab_without_a_checkout(tmp_path: Path) -> None:
    proc = job("nab", "--nab-dir", str(tmp_path / "nab"), "--out", str(tmp_path / "out"))
    nab = tmp_path / "nab"
    assert last_line_of_a_clean_failure(proc) == (
        f"error: no NAB checkout at {nab} (expected {nab}/data/): check the path and run again"
    )


# -- a failure inside Flink ----------------------------------------------------------------


@pytest.mark.minicluster
def test_a_job_failing_inside_flink_ends_in_its_root_cause(tmp_path: Path) -> None:
    """With the pre-flight check off, the source's own admin client times out (fast here)."""
    proc = job(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--set",
        "source.type=kafka",
        "--set",
        "kafka.bounded=true",
        "--set",
        f"kafka.bootstrap_servers=127.0.0.1:{free_port()}",
        "--set",
        "kafka.preflight=false",
        "--set",
        "kafka.properties=[[default.api.timeout.ms, '2000'], [request.timeout.ms, '1000']]",
        env={"TMPDIR": str(tmp_path)},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert len(proc.stderr.splitlines()) == 1, output  # the root cause is itself an Exception
    assert "at org.apache" not in output and "Traceback" not in output, output
    last = proc.stderr.splitlines()[-1]
    match = re.fullmatch(
        r"error: the Flink job failed: TimeoutException: Timed out waiting for a node"
        r" assignment\. Call: listNodes \(whole trace in (\S+)\): fix the cause and run again",
        last,
    )
    assert match, last
    trace_file = Path(match.group(1))
    assert trace_file.parent == tmp_path
    assert "at org.apache.flink" in trace_file.read_text()


def test_a_python_error_inside_an_operator_is_named_by_its_exception_line() -> None:
    message = (
        "Error received from SDK harness for instruction 4:\n"
        "Traceback (most recent call last):\n"
        '  File "udfs/detect.py", line 9, in process_element\n'
        "    raise KeyError(k)\n"
        "KeyError: 'cpu'\n"
        "\tat org.apache.beam.runners.fnexecution.control.FnApiControlClient.onNext\n"
    )
    assert _first_words(message) == "KeyError: 'cpu'"
    assert _first_words("Timed out waiting.\nmore detail") == "Timed out waiting."
    assert _first_words("") == ""


def test_preflight_checks_the_verdict_and_control_topics_the_job_reads(listening_broker: str) -> None:
    cfg = KafkaConfig(bootstrap_servers=listening_broker, read_control=True, control_topic="ops.ctl")
    with pytest.raises(KafkaPreflightError, match=r"ops\.ctl does not exist .*fix kafka\.control_topic$"):
        kio.preflight(cfg, events_topic=True)
    cfg = KafkaConfig(bootstrap_servers=listening_broker, read_verdicts=True, verdicts_topic="ops.v")
    with pytest.raises(KafkaPreflightError, match=r"fix kafka\.verdicts_topic$"):
        kio.preflight(cfg, events_topic=True)
