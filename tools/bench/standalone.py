"""A standalone cluster for the bench, driven through ``scripts/cluster.sh`` and REST, and the
steady-state rate of a job on it (the ``cluster`` and ``scale`` parts).

Steady state: the keyed operator's ``anomaly.events`` counter and the CPU time of every
process of the cluster (JobManager, TaskManagers and what they start, Python included),
sampled together, between the samples at 20 % and 95 % of a run's events. Job start
(deployment, the Python workers' imports, the first entities' state) and the end of the
input fall outside, so the rate is what each further event costs, with no fixed cost to
subtract and none of its noise.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import PROJECT_ROOT
from tools.bench.flink import CpuMeter

__all__ = [
    "StandaloneCluster", "cluster_pids", "events_in", "free_port", "free_port_range", "sample_until",
    "steady_rate",
]

#: The keyed operator's event counter as each TaskManager's Prometheus reporter shows it.
_EVENTS = re.compile(r"^flink_taskmanager_job_task_operator_anomaly_events\{[^}]*\} (\S+)$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(n: int) -> str:
    """``lo-hi``: n consecutive loopback ports free now (the Prometheus reporters take them)."""
    rng = random.Random()
    for _ in range(200):
        lo = rng.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(lo, lo + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return f"{lo}-{lo + n - 1}"
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def events_in(scrape: str) -> float:
    """The sum of the ``anomaly.events`` counters in one Prometheus scrape."""
    return sum(float(v) for v in _EVENTS.findall(scrape))


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def cluster_pids(build: Path, daemon: str = "") -> list[int]:
    """The live pids in cluster.sh's pid files (``daemon``: only ``taskexecutor`` or
    ``standalonesession``): the processes whose CPU time, with their descendants', is the
    cluster's."""
    pids = []
    for f in sorted((build / "flink-pid").glob(f"*{daemon}.pid" if daemon else "*.pid")):
        pids += [int(x) for x in f.read_text().split() if x.strip().isdigit()]
    live = [p for p in pids if Path(f"/proc/{p}").exists()]
    if not live:
        raise RuntimeError(f"no live {daemon or 'cluster'} process in {build / 'flink-pid'}")
    return live


class StandaloneCluster:
    """A cluster of ``taskmanagers`` one-slot TaskManagers in ``work/cluster`` (``backend``:
    ``rocksdb`` for the RocksDB profile), started at construction; :meth:`stop` ends it."""

    def __init__(self, work: Path, taskmanagers: int = 1, backend: str = "") -> None:
        self.script = str(PROJECT_ROOT / "scripts" / "cluster.sh")
        self.build = work / "cluster"
        self.env = dict(os.environ, VENV=sys.prefix)
        self.rest_port, rpc_port = free_port(), free_port()
        self.metrics_ports = free_port_range(8)
        self.base = f"http://127.0.0.1:{self.rest_port}"
        self._reporters: list[int] | None = None
        cmd = [self.script, "start", "--taskmanagers", str(taskmanagers), "--build-dir", str(self.build)]
        cmd += ["--rest-port", str(self.rest_port), "--rpc-port", str(rpc_port)]
        cmd += ["--metrics-ports", self.metrics_ports]
        if backend:
            cmd += ["--state-backend", backend]
        subprocess.run(cmd, check=True, env=self.env, cwd=PROJECT_ROOT, capture_output=True, timeout=300)

    def stop(self) -> None:
        subprocess.run([self.script, "stop", "--build-dir", str(self.build)], env=self.env,
                       cwd=PROJECT_ROOT, capture_output=True, timeout=120)

    def get(self, path: str) -> Any:
        return json.loads(_get(self.base + path))

    def script_run(self, *args: str, timeout: float = 600) -> None:
        """``cluster.sh ARGS --build-dir ...`` (``submit`` takes the flink arguments after ``--``)."""
        head, sep, tail = list(args), [], []
        if "--" in head:
            i = head.index("--")
            head, sep, tail = head[:i], ["--"], head[i + 1:]
        cmd = [self.script, *head, "--build-dir", str(self.build), *sep, *tail]
        subprocess.run(cmd, check=True, env=self.env, cwd=PROJECT_ROOT, capture_output=True, timeout=timeout)

    def submit(self, name: str, flink_args: Sequence[str]) -> str:
        """``flink run -d FLINK_ARGS`` (the job named ``name``); its job id."""
        self.script_run("submit", "--", "-d", *flink_args)
        return str(next(j["jid"] for j in self.get("/jobs/overview")["jobs"] if j["name"] == name))

    def state(self, jid: str) -> str:
        return str(next(j["state"] for j in self.get("/jobs/overview")["jobs"] if j["jid"] == jid))

    def detect_vertex(self, jid: str) -> str:
        return str(next(v["id"] for v in self.get(f"/jobs/{jid}")["vertices"] if "detect" in v["name"]))

    def events(self, jid: str, vid: str) -> int:
        """The keyed operator's ``anomaly.events`` counter over REST (sum over its subtasks;
        the JobManager refreshes it every few seconds)."""
        names = [m["id"] for m in self.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics")]
        name = next((n for n in names if n.endswith("anomaly.events")), None)
        if name is None:
            return 0
        rows = self.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics?get={name}&agg=sum")
        return int(float(rows[0]["sum"])) if rows else 0

    def _scrape(self, port: int) -> str | None:
        try:
            return _get(f"http://127.0.0.1:{port}/metrics", timeout=2).decode()
        except (OSError, http.client.HTTPException, UnicodeDecodeError):
            return None

    def scraped_events(self) -> int:
        """The same counter read now from every TaskManager's Prometheus reporter (summed over
        its subtasks): no refresh interval, for short runs. The reporters are found once, as
        the ports of the range that answer with Flink's metrics (another process may hold a
        port of the range)."""
        if self._reporters is None:
            lo, hi = (int(x) for x in self.metrics_ports.split("-"))
            self._reporters = [p for p in range(lo, hi + 1) if "flink_" in (self._scrape(p) or "")]
        return int(sum(events_in(self._scrape(p) or "") for p in self._reporters))

    def checkpoints(self, jid: str) -> dict[str, Any]:
        return dict(self.get(f"/jobs/{jid}/checkpoints"))

    def cancel(self, jid: str) -> None:
        req = urllib.request.Request(f"{self.base}/jobs/{jid}?mode=cancel", method="PATCH")
        with urllib.request.urlopen(req, timeout=30):
            pass
        self.wait_status(jid, "CANCELED", 300)

    def wait_status(self, jid: str, status: str, timeout_s: float) -> None:
        t0 = time.monotonic()
        while self.state(jid) != status:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"job {jid} not {status} within {timeout_s:.0f} s")
            time.sleep(0.5)


def steady_rate(samples: list[tuple[float, int, float]], total: int) -> dict[str, Any]:
    """Rate between the samples at 20 % and 95 % of ``total`` events: ``(t, events, cpu_s)``."""
    lo = next((s for s in samples if s[1] >= 0.2 * total), None)
    hi = next((s for s in reversed(samples) if s[1] <= 0.95 * total), None)
    if lo is None or hi is None or hi[1] <= lo[1]:
        return {"eps": None, "eps_per_cpu_s": None, "events": 0}
    n = hi[1] - lo[1]
    return {
        "eps": n / (hi[0] - lo[0]),
        "eps_per_cpu_s": n / max(hi[2] - lo[2], 1e-9),
        "events": n,
        "cores_busy": (hi[2] - lo[2]) / (hi[0] - lo[0]),
    }


def sample_until(
    done: Callable[[int], bool], events: Callable[[], int], meter: CpuMeter, every_s: float, timeout_s: float,
    progress: Callable[[int, float], None] | None = None,
) -> list[tuple[float, int, float]]:
    """``(t, events, cpu_s)`` every ``every_s`` until ``done(events)``; ``progress(events,
    seconds)`` once a minute."""
    samples: list[tuple[float, int, float]] = []
    t0 = last_log = time.monotonic()
    while True:
        now = time.monotonic()
        n = events()
        samples.append((now, n, meter.read()))
        if done(n):
            return samples
        if now - t0 > timeout_s:
            raise TimeoutError(f"{n:,} events after {timeout_s:.0f} s")
        if progress is not None and now - last_log > 60:
            progress(n, now - t0)
            last_log = now
        time.sleep(every_s)
