"""Session fixtures for the end-to-end tests: a real single-node Kafka (KRaft) and a real
standalone Flink cluster from the wheel, both on free loopback ports, started by the project's
scripts and always stopped at the end of the session (even when a test or a start fails).

State, logs and configs go to build/e2e/ (wiped at the start of each session).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tools.bench.standalone import free_port, free_port_range

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
E2E_BUILD = ROOT / "build" / "e2e"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test against a real Kafka broker and Flink cluster (slow, starts JVMs)",
    )
    config.addinivalue_line(
        "markers",
        "fault_matrix: a fault-matrix case left out of `make test` (`make test-e2e` and "
        "`make soak` run it)",
    )


def run_script(args: list[str], timeout: float, log: pathlib.Path) -> subprocess.CompletedProcess:
    """Run one of scripts/*.sh, keep its output in `log`, fail with its tail if it fails."""
    env = dict(os.environ, VENV=sys.prefix)  # the venv running pytest
    proc = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(args)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(args[:2])} failed (rc={proc.returncode}):\n{tail}", pytrace=False)
    return proc


@dataclasses.dataclass(frozen=True)
class Broker:
    bootstrap: str
    port: int
    dir: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Cluster:
    rest_url: str
    build_dir: pathlib.Path
    metrics_ports: str  # the Prometheus reporters' port range, e.g. "41000-41007"

    def script(self, *args: str) -> list[str]:
        return [str(SCRIPTS / "cluster.sh"), *args]


@pytest.fixture(scope="session")
def e2e_build_dir() -> pathlib.Path:
    if E2E_BUILD.exists():
        # a previous session killed hard may have left processes: stop them before wiping
        if (E2E_BUILD / "kafka").exists():
            subprocess.run([str(SCRIPTS / "kafka.sh"), "stop", "--dir", str(E2E_BUILD / "kafka")],
                           capture_output=True, timeout=60)
        if (E2E_BUILD / "flink").exists():
            subprocess.run([str(SCRIPTS / "cluster.sh"), "stop", "--build-dir",
                            str(E2E_BUILD / "flink")], capture_output=True, timeout=60)
        shutil.rmtree(E2E_BUILD)
    E2E_BUILD.mkdir(parents=True)
    return E2E_BUILD


@pytest.fixture(scope="session")
def pinned_jars(e2e_build_dir: pathlib.Path) -> pathlib.Path:
    """Make sure deps/ holds the pinned, checksum-verified jars (no network when present)."""
    run_script([str(SCRIPTS / "fetch_jars.sh")], timeout=600, log=e2e_build_dir / "fetch_jars.log")
    jars = sorted((ROOT / "deps").glob("flink-sql-connector-kafka-*.jar"))
    assert jars, "fetch_jars.sh left no connector jar in deps/"
    return jars[0]


@pytest.fixture(scope="session")
def kafka_broker(e2e_build_dir: pathlib.Path, pinned_jars: pathlib.Path):
    kdir = e2e_build_dir / "kafka"
    port, cport = free_port(), free_port()
    while cport == port:
        cport = free_port()
    log = e2e_build_dir / "kafka-script.log"
    try:
        run_script(
            [str(SCRIPTS / "kafka.sh"), "start", "--port", str(port), "--controller-port",
             str(cport), "--dir", str(kdir), "--timeout", "90"],
            timeout=150, log=log,
        )
        yield Broker(bootstrap=f"127.0.0.1:{port}", port=port, dir=kdir)
    finally:
        subprocess.run([str(SCRIPTS / "kafka.sh"), "stop", "--dir", str(kdir)],
                       capture_output=True, timeout=90)


@pytest.fixture(scope="session")
def flink_cluster(e2e_build_dir: pathlib.Path, pinned_jars: pathlib.Path):
    """The session's cluster: one TaskManager, in build/e2e/flink."""
    with standalone_cluster(e2e_build_dir, "flink", taskmanagers=1, timeout_s=150) as cluster:
        yield cluster


@contextlib.contextmanager
def standalone_cluster(
    e2e_build_dir: pathlib.Path, name: str, taskmanagers: int, timeout_s: int = 240
) -> Iterator[Cluster]:
    """A standalone cluster with ``taskmanagers`` TaskManagers (one slot each), in
    ``build/e2e/<name>``, up within ``timeout_s``; stopped on exit."""
    bdir = e2e_build_dir / name
    rest_port, rpc = free_port(), free_port()
    while rpc == rest_port:
        rpc = free_port()
    metrics = free_port_range(8)
    try:
        run_script(
            [str(SCRIPTS / "cluster.sh"), "start", "--taskmanagers", str(taskmanagers),
             "--rest-port", str(rest_port), "--rpc-port", str(rpc), "--metrics-ports", metrics,
             "--build-dir", str(bdir), "--timeout", str(timeout_s)],
            timeout=timeout_s + 90, log=e2e_build_dir / f"{name}-script.log",
        )
        yield Cluster(rest_url=f"http://127.0.0.1:{rest_port}", build_dir=bdir, metrics_ports=metrics)
    finally:
        subprocess.run([str(SCRIPTS / "cluster.sh"), "stop", "--build-dir", str(bdir)],
                       capture_output=True, timeout=120)
