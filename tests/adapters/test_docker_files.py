"""docker/Dockerfile and docker/compose.yaml agree with the project's pins.

No Docker engine is needed: the files are parsed and every version, path and option they
carry is checked against requirements.lock, pyproject.toml, scripts/fetch_jars.sh,
scripts/jars.sha256 and the job's own configuration loader.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml

from job.config import load_config
from job.kafka_io import KafkaConfig
from tests import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def fetch_jars_versions() -> dict[str, str]:
    text = (ROOT / "scripts" / "fetch_jars.sh").read_text()
    return dict(re.findall(r'^([A-Z_]+_VERSION)="([^"]+)"', text, re.M))


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.M))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def flink_properties(service: dict[str, Any]) -> dict[str, str]:
    """FLINK_PROPERTIES as the image's entrypoint reads it (one `key: value` per line)."""
    props = {}
    for line in service["environment"]["FLINK_PROPERTIES"].splitlines():
        line = re.sub(r"\s", "", line)
        if line:
            key, _, value = line.partition(":")
            props[key] = value
    return props


def test_flink_image_is_the_pinned_flink_on_java_17() -> None:
    args = dockerfile_args()
    flink = lock_pins()["apache-flink"]
    assert args["FLINK_VERSION"] == flink
    assert f'"apache-flink=={flink}"' in (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^FROM flink:\$\{FLINK_VERSION\}-java17$", DOCKERFILE.read_text(), re.M)
    assert lock_pins()["apache-flink-libraries"] == flink


def test_python_version_satisfies_requires_python() -> None:
    version = dockerfile_args()["PYTHON_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    spec = pyproject()["project"]["requires-python"]  # ">=3.11,<3.12"
    for clause in spec.split(","):
        op, bound = re.fullmatch(r"(>=|<|==|<=|>)\s*([\d.]+)", clause.strip()).groups()  # type: ignore[union-attr]
        b = tuple(int(x) for x in bound.split("."))
        assert {">=": major_minor >= b, "<": major_minor < b, "<=": major_minor <= b,
                ">": major_minor > b, "==": major_minor == b}[op], (version, spec)
    text = DOCKERFILE.read_text()
    assert "--enable-shared" in text  # PEMJA (thread mode) embeds libpython


def test_image_installs_exactly_the_locked_requirements() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY requirements.lock /opt/flink-anomaly/requirements.lock" in text
    assert re.search(r"pip install .*-r /opt/flink-anomaly/requirements.lock", text, re.S)
    # every runtime dependency of pyproject is pinned to the same version in the lock
    pins = lock_pins()
    for dep in pyproject()["project"]["dependencies"]:
        name, version = dep.split("==")
        assert pins[name.lower()] == version, dep


def test_connector_jar_is_the_pinned_one_with_its_checksum() -> None:
    args = dockerfile_args()
    pinned = fetch_jars_versions()["FLINK_KAFKA_CONNECTOR_VERSION"]
    assert args["FLINK_KAFKA_CONNECTOR_VERSION"] == pinned
    jar = f"flink-sql-connector-kafka-{pinned}.jar"
    sums = dict(
        reversed(line.split())
        for line in (ROOT / "scripts" / "jars.sha256").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert args["FLINK_KAFKA_CONNECTOR_SHA256"] == sums[jar]
    text = DOCKERFILE.read_text()
    assert "COPY deps/flink-sql-connector-kafka-${FLINK_KAFKA_CONNECTOR_VERSION}.jar /opt/flink/lib/" in text
    assert "sha256sum --check" in text
    # the PEMJA fix of scripts/cluster.sh, the image's way
    assert "cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/" in text
    assert "flink-python" in (ROOT / "scripts" / "cluster.sh").read_text()


def test_image_holds_the_job_packages() -> None:
    text = DOCKERFILE.read_text()
    for pkg in ("job", "udfs", "state"):
        assert f"COPY {pkg}/ /opt/flink/usrlib/{pkg}/" in text
        assert (ROOT / pkg / "__init__.py").is_file()
    assert (ROOT / "job" / "main.py").is_file()
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text()
    for needed in ("!requirements.lock", "!job/", "!udfs/", "!state/", "!deps/flink-sql-connector-kafka-*.jar"):
        assert needed in ignore.splitlines()


def test_compose_builds_the_image_with_the_dockerfile_versions(compose: dict[str, Any]) -> None:
    args = dockerfile_args()
    for name in ("jobmanager", "taskmanager", "submit"):
        svc = compose["services"][name]
        assert svc["image"] == f"flink-anomaly:{pyproject()['project']['version']}"
        build = svc["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        for key, value in build["args"].items():
            assert args[key] == value, key
    assert compose["services"]["jobmanager"]["command"] == "jobmanager"
    assert compose["services"]["taskmanager"]["command"] == "taskmanager"


def test_compose_kafka_is_the_pinned_broker_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{fetch_jars_versions()['KAFKA_VERSION']}"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    lines = COMPOSE.read_text().splitlines()
    settings = "\n".join(x for x in lines if not x.lstrip().startswith("#"))
    assert "zookeeper" not in settings.lower()
    # transactions on one node, and room for the sinks' transaction timeout
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert env["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"] >= KafkaConfig().transaction_timeout_ms


def test_compose_flink_configuration(compose: dict[str, Any]) -> None:
    python = f"/usr/local/bin/python{'.'.join(dockerfile_args()['PYTHON_VERSION'].split('.')[:2])}"
    for name in ("jobmanager", "taskmanager", "submit"):
        props = flink_properties(compose["services"][name])
        assert props["python.executable"] == python, name
        assert props["python.client.executable"] == python, name
        assert props["python.execution-mode"] == "thread", name
        assert props["jobmanager.rpc.address"] == "jobmanager", name
    cluster = flink_properties(compose["services"]["taskmanager"])
    assert cluster["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert cluster["execution.checkpointing.dir"] == "file:///opt/flink/checkpoints"
    assert cluster["state.backend.type"] == "hashmap"
    # the flat keys (no nesting) the entrypoint can pass on, each a real Flink key shape
    assert all(re.fullmatch(r"[A-Za-z0-9.-]+", k) for k in cluster)


def test_compose_submits_main_py_with_a_valid_configuration(compose: dict[str, Any]) -> None:
    """The submit command's `--set` options load with the job's own configuration loader."""
    command = compose["services"]["submit"]["command"]
    assert command[:2] == ["/bin/bash", "-c"]
    words = shlex.split(command[2].replace("$${SAVEPOINT:+-s $$SAVEPOINT}", ""))
    assert words[:6] == ["exec", "/opt/flink/bin/flink", "run", "-m", "jobmanager:8081", "-d"]
    assert words[6:8] == ["-py", "/opt/flink/usrlib/job/main.py"]
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert len(sets) * 2 == len(words) - 8
    cfg = load_config(None, sets)
    assert cfg.source.type == "kafka" and cfg.sink.type == "kafka"
    assert cfg.kafka.bootstrap_servers == "kafka:29092"
    internal = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{cfg.kafka.bootstrap_servers}" in internal
    assert cfg.kafka.delivery == "exactly_once"


def test_compose_creates_the_input_topic_before_submitting(compose: dict[str, Any]) -> None:
    """The submit's pre-flight check and the job's source both need it to exist."""
    topics = compose["services"]["topics"]
    assert topics["image"] == compose["services"]["kafka"]["image"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    args = dict(a.removeprefix("--").partition("=")[::2] for a in topics["command"])
    assert "create" in args and "if-not-exists" in args
    words = shlex.split(compose["services"]["submit"]["command"][2].replace("$${SAVEPOINT:+-s $$SAVEPOINT}", ""))
    cfg = load_config(None, [words[i + 1] for i, w in enumerate(words) if w == "--set"])
    assert args["topic"] == cfg.kafka.events_topic
    assert args["bootstrap-server"] == cfg.kafka.bootstrap_servers
    assert cfg.kafka.preflight
    submit_needs = compose["services"]["submit"]["depends_on"]
    assert submit_needs["topics"]["condition"] == "service_completed_successfully"


def test_compose_publishes_ports_on_the_loopback_interface_only(compose: dict[str, Any]) -> None:
    """The REST API accepts jobs and Kafka's listener is plaintext: neither is published to a
    network by default (a bare "8081:8081" binds every interface of the host)."""
    published = [(name, port) for name, svc in compose["services"].items()
                 for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"kafka", "jobmanager"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
