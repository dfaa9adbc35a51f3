"""Prometheus and Alertmanager beside the cluster and the broker, on 127.0.0.1.

    scripts/ops.sh start   [--dir DIR] [--prometheus-port P] [--alertmanager-port P]
                           [--flink-ports RANGE] [--forwarder-port P] [--scrape-interval D]
                           [--webhook URL | --alertmanager-config FILE] [--timeout S]
    scripts/ops.sh targets [--dir DIR] [--flink-ports RANGE] [--forwarder-port P]
    scripts/ops.sh stop    [--dir DIR]
    scripts/ops.sh status  [--dir DIR]

start renders ops/prometheus.yml, ops/rules.yml and ops/alertmanager.yml into DIR (default
build/ops), writes the scrape targets, starts Alertmanager (port 9093, its cluster gossip
off) and Prometheus (port 9090), both bound to 127.0.0.1, and returns once both answer
``/-/ready``; it prints the two URLs. Starting what already runs is a no-op.

targets finds the Flink processes whose Prometheus reporter answers on the metrics port range
(``metrics.reporter.prom.port`` of flink-conf/config.yaml, default 9249-9269) and writes
DIR/targets/flink.json (Prometheus re-reads it); the forwarder's port (9270) goes to
DIR/targets/forwarder.json. Run it again after TaskManagers come or go.

The binaries: deps/ops/bin (scripts/fetch_ops.sh), or PROMETHEUS / ALERTMANAGER in the
environment. Data lives in DIR until it is deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "deps" / "ops" / "bin"


def die(msg: str) -> None:
    print(f"ops.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def binary(name: str, env: str) -> str:
    path = os.environ.get(env) or str(BIN / name)
    if not os.access(path, os.X_OK):
        die(f"no {name} at {path}: run scripts/fetch_ops.sh (or set {env})")
    return path


def flink_ports(spec: str | None) -> list[int]:
    if not spec:
        conf = (ROOT / "flink-conf" / "config.yaml").read_text()
        m = re.search(r"^metrics\.reporter\.prom\.port:\s*(\S+)", conf, re.M)
        spec = m.group(1) if m else "9249"
    ports: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        ports += range(int(lo), int(hi or lo) + 1)
    return ports


def answers(url: str, needle: str = "") -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200 and needle in r.read().decode(errors="replace")
    except OSError:
        return False


def write_targets(d: Path, ports: list[int], forwarder_port: int) -> list[str]:
    found = [f"127.0.0.1:{p}" for p in ports if answers(f"http://127.0.0.1:{p}/metrics", "flink_")]
    (d / "targets").mkdir(parents=True, exist_ok=True)
    for name, targets in (("flink", found), ("forwarder", [f"127.0.0.1:{forwarder_port}"])):
        tmp = d / "targets" / f".{name}.json"
        tmp.write_text(json.dumps([{"targets": targets, "labels": {}}], indent=1))
        tmp.replace(d / "targets" / f"{name}.json")
    return found


def pid_of(d: Path, name: str) -> int | None:
    f = d / f"{name}.pid"
    try:
        pid = int(f.read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if str(d) in cmd else None


def render(d: Path, a: argparse.Namespace) -> None:
    text = (ROOT / "ops" / "prometheus.yml").read_text()
    for k, v in (("@OPS_DIR@", str(d)), ("@SCRAPE_INTERVAL@", a.scrape_interval),
                 ("@ALERTMANAGER@", f"127.0.0.1:{a.alertmanager_port}")):
        text = text.replace(k, v)
    (d / "prometheus.yml").write_text(text)
    (d / "rules.yml").write_text((ROOT / "ops" / "rules.yml").read_text())
    if a.alertmanager_config:
        am = Path(a.alertmanager_config).read_text()
    else:
        receivers = (
            f"    webhook_configs:\n      - url: {json.dumps(a.webhook)}\n        send_resolved: true"
            if a.webhook else "    # no notifier: alerts are listed in the UI and the API only"
        )
        am = re.sub(r"^@RECEIVERS@$", lambda _: receivers,
                    (ROOT / "ops" / "alertmanager.yml").read_text(), flags=re.M)
    (d / "alertmanager.yml").write_text(am)


def launch(d: Path, name: str, argv: list[str]) -> None:
    log = (d / f"{name}.log").open("ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=d,
                            start_new_session=True)
    (d / f"{name}.pid").write_text(str(proc.pid))


def wait_ready(d: Path, name: str, url: str, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if answers(url):
            return
        if pid_of(d, name) is None:
            break
        time.sleep(0.3)
    tail = (d / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
    die(f"{name} did not become ready at {url}:\n" + "\n".join(tail))


def start(d: Path, a: argparse.Namespace) -> None:
    prom, am = binary("prometheus", "PROMETHEUS"), binary("alertmanager", "ALERTMANAGER")
    render(d, a)
    found = write_targets(d, flink_ports(a.flink_ports), a.forwarder_port)
    am_url = f"http://127.0.0.1:{a.alertmanager_port}"
    prom_url = f"http://127.0.0.1:{a.prometheus_port}"
    if pid_of(d, "alertmanager") is None:
        launch(d, "alertmanager", [
            am, f"--config.file={d / 'alertmanager.yml'}", f"--storage.path={d / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{a.alertmanager_port}", "--cluster.listen-address=",
        ])
    if pid_of(d, "prometheus") is None:
        launch(d, "prometheus", [
            prom, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{a.prometheus_port}", "--web.enable-lifecycle",
        ])
    wait_ready(d, "alertmanager", f"{am_url}/-/ready", a.timeout)
    wait_ready(d, "prometheus", f"{prom_url}/-/ready", a.timeout)
    (d / "urls.json").write_text(json.dumps({"prometheus": prom_url, "alertmanager": am_url}))
    print(f"ops.sh: Prometheus {prom_url}, Alertmanager {am_url}; "
          f"{len(found)} Flink target(s): {', '.join(found) or 'none yet (ops.sh targets)'}",
          file=sys.stderr)
    print(prom_url)
    print(am_url)


def stop(d: Path) -> None:
    for name in ("prometheus", "alertmanager"):
        pid = pid_of(d, name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        t0 = time.time()
        while pid_of(d, name) is not None and time.time() - t0 < 20:
            time.sleep(0.2)
        if pid_of(d, name) is not None:
            os.kill(pid, signal.SIGKILL)
        (d / f"{name}.pid").unlink(missing_ok=True)
        print(f"ops.sh: stopped {name} (pid {pid})", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(prog="scripts/ops.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("start", "stop", "status", "targets"))
    p.add_argument("--dir", default=str(ROOT / "build" / "ops"))
    p.add_argument("--prometheus-port", type=int, default=9090)
    p.add_argument("--alertmanager-port", type=int, default=9093)
    p.add_argument("--flink-ports", help="reporter port range (default: flink-conf/config.yaml)")
    p.add_argument("--forwarder-port", type=int, default=9270)
    p.add_argument("--scrape-interval", default="15s")
    p.add_argument("--webhook", help="Alertmanager webhook receiver URL (send_resolved)")
    p.add_argument("--alertmanager-config", help="your own alertmanager.yml")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    d = d.resolve()
    if a.command == "start":
        start(d, a)
    elif a.command == "stop":
        stop(d)
    elif a.command == "targets":
        found = write_targets(d, flink_ports(a.flink_ports), a.forwarder_port)
        print(f"ops.sh: {len(found)} Flink target(s): {', '.join(found) or 'none'}", file=sys.stderr)
    else:
        running = {n: pid_of(d, n) for n in ("prometheus", "alertmanager")}
        print(f"ops.sh: {running}")
        return 0 if all(running.values()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
