"""scripts/cluster.sh renders flink-conf/config.yaml for the cluster it starts: the Prometheus
reporter on loopback (the project's plugin beside Flink's jar), the metrics port range, and
the RocksDB profile. Rendering starts no JVM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import ROOT


def render(build: Path, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster.sh"), "render", "--build-dir", str(build), *args],
        env={"VENV": sys.prefix, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    conf = {}
    for line in (build / "flink-conf" / "config.yaml").read_text().splitlines():
        if line and not line.startswith("#") and ": " in line:
            key, _, value = line.partition(": ")
            conf[key] = value  # the last one wins, as in Flink's flat YAML
    return conf


def test_defaults_heap_state_and_a_loopback_reporter(tmp_path: Path) -> None:
    conf = render(tmp_path)
    assert conf["state.backend.type"] == "hashmap"
    assert conf["metrics.reporter.prom.host"] == "127.0.0.1"
    assert conf["metrics.reporter.prom.port"] == "9249-9269"
    plugin = tmp_path / "flink-plugins" / "metrics-prometheus"
    jars = sorted(p.name for p in plugin.iterdir())
    # the project's reporter (built by `make native` with the JDK's javac) beside Flink's, in
    # one plugin folder (one class loader)
    assert conf["metrics.reporter.prom.factory.class"].startswith("flinkanomaly.metrics.")
    assert any(j.startswith("loopback-prometheus-") for j in jars), jars
    assert any(j.startswith("flink-metrics-prometheus-") for j in jars), jars


def test_the_rocksdb_profile_and_ports_survive_a_later_render(tmp_path: Path) -> None:
    conf = render(tmp_path, "--state-backend", "rocksdb", "--metrics-ports", "41000-41003")
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.incremental"] == "true"
    assert conf["taskmanager.memory.managed.fraction"] == "0.4"
    # `submit` and `add-taskmanager` render again without the options: nothing reverts
    again = render(tmp_path)
    assert again["state.backend.type"] == "rocksdb"
    assert again["metrics.reporter.prom.port"] == "41000-41003"


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster.sh"), "render", "--build-dir", str(tmp_path),
         "--state-backend", "leveldb"],
        env={"VENV": sys.prefix, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )
    assert out.returncode != 0 and "--state-backend must be hashmap or rocksdb" in out.stderr


def latest(build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "cluster.sh"), "latest-checkpoint", "--build-dir", str(build), *args],
        env={"VENV": sys.prefix, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120,
    )


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path: Path) -> None:
    import os

    render(tmp_path)
    root = tmp_path / "flink-checkpoints"
    old_job, new_job = "a" * 32, "b" * 32

    def chk(job: str, n: int, at: int, complete: bool = True) -> Path:
        d = root / job / f"chk-{n}"
        d.mkdir(parents=True)
        if complete:
            (d / "_metadata").write_bytes(b"x")
            os.utime(d / "_metadata", (at, at))
        return d

    chk(old_job, 40, 1_000)
    newest_old = chk(old_job, 41, 2_000)
    newest = chk(new_job, 3, 3_000)  # the resumed job's, newer than any of the old one
    chk(new_job, 4, 4_000, complete=False)  # cut short by the crash: no _metadata
    (root / new_job / "shared").mkdir()
    out = latest(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(newest)
    out = latest(tmp_path, "--job", old_job)
    assert out.stdout.strip() == str(newest_old)
    out = latest(tmp_path, "--job", "c" * 32)
    assert out.returncode != 0 and "no complete retained checkpoint of job" in out.stderr
