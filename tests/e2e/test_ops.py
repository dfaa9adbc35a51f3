"""Operating the job the SRE way, with the real parts: the standalone cluster's Prometheus
reporters scraped by a real Prometheus, and the job's alerts delivered by
``python -m job forward-alerts`` to a real Alertmanager, which notifies a webhook.

The demo stream (three injected incidents) flows through Kafka in segments, as it would in
time: each segment ends a little after an incident's episode opens or resolves, and the
test waits for Alertmanager's notification before the next. On the way the forwarder is
SIGKILLed and restarted, and later the TaskManager: Alertmanager must still hold every
episode once, and notify each incident once firing and once resolved.

Asserted:
* Prometheus holds the job's ``anomaly`` counters with the values the committed output
  topics imply (events = scores, alert records, opened by severity, dead letters, late,
  drift and health), taken at a pause (before the TaskManager kill, whose restore restarts
  the counters);
* every query of the Grafana dashboard (ops/grafana/anomaly-dashboard.json) is valid PromQL
  that returns data from this running job, so the dashboard cannot rot silently;
* Alertmanager: the three incidents notified firing with the episode's severity, labels,
  runbook and dashboard links, and then resolved; no ``alert_id`` twice among its alerts;
  the episodes still open at the end are exactly the ones it lists; every committed output
  equals the replay oracle's (exactly once through the kill).
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from job.config import load_config
from job.demo_data import incidents, write_demo
from tests.e2e.conftest import free_port
from tests.e2e.kafka_helpers import create_topics, unique
from tests.e2e.test_job_kafka import (
    OUTPUTS,
    OutputReader,
    cancel,
    checkpoints,
    counts_of,
    kill_taskmanager,
    oracle,
    produce,
    settle_and_compare,
    submit,
    wait_until,
)

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "anomaly-dashboard.json"
OP = "flink_taskmanager_job_task_operator_anomaly_"
MINUTE = 60_000
MARGIN_MS = 10 * MINUTE  # event time produced past an episode's record before waiting for it
# The demo's own detector (the default profile), every scored event visible, checkpoints
# every second (outputs are committed on checkpoints), restarts enough for a kill.
SETS = [
    "sink.emit_scores=true",
    "execution.checkpoint_interval_ms=1000",
    "execution.restart_attempts=30",
    "kafka.starting_offsets=earliest",
    "kafka.transaction_timeout_ms=300000",
]


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification."""

    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.notes.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self, alert_id: str) -> list[tuple[str, str]]:
        """(status, severity) of every notification of an episode, in order."""
        return [
            (a["status"], a["labels"]["severity"])
            for n in list(self.notes) for a in n["alerts"]
            if a["labels"].get("alert_id") == alert_id
        ]

    def alert(self, alert_id: str) -> dict[str, Any]:
        return next(a for n in self.notes for a in n["alerts"]
                    if a["labels"].get("alert_id") == alert_id)


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def promql(prom: str, expr: str) -> list[dict[str, Any]]:
    out = http_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert out["status"] == "success", (expr, out)
    return list(out["data"]["result"])


def scalar(prom: str, expr: str) -> float | None:
    res = promql(prom, expr)
    return float(res[0]["value"][1]) if res else None


@pytest.fixture(scope="module")
def ops(flink_cluster, e2e_build_dir):
    """Prometheus (1 s scrapes) and Alertmanager (a webhook, 1 s grouping) by scripts/ops.sh."""
    hook = Webhook()
    d = e2e_build_dir / "ops"
    d.mkdir(parents=True, exist_ok=True)
    am_conf = d / "alertmanager-test.yml"
    am_conf.write_text(
        "route:\n  receiver: hook\n  group_by: [alert_id, alertname]\n  group_wait: 1s\n"
        "  group_interval: 1s\n  repeat_interval: 1h\n"
        f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook.url}\n"
        "        send_resolved: true\n"
    )
    fwd_port = free_port()
    script = [str(ROOT / "scripts" / "ops.sh")]
    common = ["--dir", str(d), "--flink-ports", flink_cluster.metrics_ports,
              "--forwarder-port", str(fwd_port)]
    subprocess.run([str(ROOT / "scripts" / "fetch_ops.sh")], check=True, timeout=600,
                   capture_output=True)
    try:
        out = subprocess.run(
            [*script, "start", *common, "--prometheus-port", str(free_port()),
             "--alertmanager-port", str(free_port()), "--scrape-interval", "1s",
             "--alertmanager-config", str(am_conf)],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        prom, am = out.stdout.split()
        yield {"prom": prom, "am": am, "hook": hook, "fwd_port": fwd_port,
               "targets": [*script, "targets", *common]}
    finally:
        subprocess.run([*script, "stop", "--dir", str(d)], capture_output=True, timeout=60)
        hook.server.shutdown()


class ForwarderProcess:
    def __init__(self, sets: list[str], am: str, port: int, log: pathlib.Path) -> None:
        self.args = [sys.executable, "-m", "job", "forward-alerts", "--alertmanager", am,
                     "--metrics-port", str(port)]
        for s in sets:
            self.args += ["--set", s]
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        return {k: float(v) for k, v in (line.split() for line in text.decode().splitlines()
                                         if line and not line.startswith("#"))}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def episodes(alerts: list[str]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in alerts:
        rec = json.loads(line)
        by_id[rec["alert_id"]].append(rec)
    return {k: sorted(v, key=lambda r: r["ts_ms"]) for k, v in by_id.items()}


def incident_episodes(expected_alerts: list[str], start_ms: int) -> list[list[dict[str, Any]]]:
    """The episode of each injected incident: its entity's first opened inside the incident."""
    eps = episodes(expected_alerts)
    found = []
    for inc in incidents():
        lo = start_ms + inc["start_min"] * MINUTE
        hi = lo + inc["minutes"] * MINUTE
        inside = [e for e in eps.values()
                  if e[0]["entity"] == inc["entity"] and lo <= e[0]["ts_ms"] < hi]
        assert inside, f"the replay finds no episode for {inc}"
        found.append(min(inside, key=lambda e: e[0]["ts_ms"]))
    return found


def cut_index(lines: list[str], ts_ms: int) -> int:
    """Index of the first line dated after ts_ms (lines that are not events keep their place)."""
    for i, line in enumerate(lines):
        try:
            if json.loads(line)["ts"] > ts_ms:
                return i
        except (ValueError, KeyError, TypeError):
            continue
    return len(lines)


def test_prometheus_and_alertmanager_see_the_job_through_kills(
        kafka_broker, flink_cluster, ops, e2e_build_dir, tmp_path):
    bs, cluster, prom, am, hook = (kafka_broker.bootstrap, flink_cluster, ops["prom"],
                                   ops["am"], ops["hook"])
    write_demo(tmp_path / "demo.jsonl")
    lines = (tmp_path / "demo.jsonl").read_text().splitlines()
    base = unique("ops")
    topics = {k: f"{base}-{k.replace('_', '-')}" for k in ("events", *OUTPUTS)}
    # The demo is dated in the past: the outputs' Kafka timestamps would be older than the
    # retention, so the topics stamp records on arrival (LogAppendTime).
    create_topics(bs, *topics.values(), config={"message.timestamp.type": "LogAppendTime"})
    sets = [*SETS, "source.type=kafka", "sink.type=kafka", f"kafka.bootstrap_servers={bs}",
            *(f"kafka.{k}_topic={t}" for k, t in topics.items()),
            f"kafka.group_id={base}-job", f"kafka.transactional_id_prefix={base}"]
    cfg = load_config(None, sets)
    expected = oracle([(lines, cfg)])
    start_ms = json.loads(lines[0])["ts"]
    inc_eps = incident_episodes(list(expected["alerts"].elements()), start_ms)
    assert all(ep[-1]["kind"] == "resolved" for ep in inc_eps), "an incident never resolved"
    assert len({ep[0]["alert_id"] for ep in inc_eps}) == 3

    reader = OutputReader(bs, topics)
    fwd = ForwarderProcess(sets, am, ops["fwd_port"], e2e_build_dir / "forwarder.log")
    job = ""
    sent = 0

    def feed_until(ts_ms: int) -> None:
        nonlocal sent
        end = max(sent, cut_index(lines, ts_ms))
        produce(bs, topics["events"], lines[sent:end])
        sent = end

    def notified(alert_id: str, status: str, timeout: float = 120) -> None:
        wait_until(f"Alertmanager notifying {alert_id} {status}",
                   lambda: any(s == status for s, _ in hook.states(alert_id)), timeout)

    try:
        job = submit(cluster, sets)
        fwd.start()
        subprocess.run(ops["targets"], check=True, capture_output=True, timeout=60)

        # incident 1: opens; the forwarder is SIGKILLed and restarted; it resolves
        first = inc_eps[0]
        feed_until(first[0]["ts_ms"] + MARGIN_MS)
        notified(first[0]["alert_id"], "firing")
        fwd.kill()
        fwd.start()
        feed_until(first[-1]["ts_ms"] + MARGIN_MS)
        notified(first[0]["alert_id"], "resolved")

        # incident 2, then a pause: every output committed, Prometheus against the topics
        second = inc_eps[1]
        feed_until(second[0]["ts_ms"] + MARGIN_MS)
        notified(second[0]["alert_id"], "firing")
        feed_until(second[-1]["ts_ms"] + MARGIN_MS)
        notified(second[0]["alert_id"], "resolved")
        prefix = oracle([(lines[:sent], cfg)])
        reader.wait_counts(counts_of(prefix), 180, "the committed outputs at the pause")
        check_prometheus_counters(prom, reader)
        check_dashboard(prom, tmp_path / "dashboard.png")

        # the TaskManager is SIGKILLed and replaced; incident 3 and the rest of the stream
        kill_taskmanager(cluster, job)
        subprocess.run(ops["targets"], check=True, capture_output=True, timeout=60)
        third = inc_eps[2]
        feed_until(third[0]["ts_ms"] + MARGIN_MS)
        notified(third[0]["alert_id"], "firing")
        feed_until(third[-1]["ts_ms"] + MARGIN_MS)
        notified(third[0]["alert_id"], "resolved")
        feed_until(2**62)
        reader.wait_counts(counts_of(expected), 240, "every output after the kill")
        assert checkpoints(cluster, job)["latest"]["restored"], "the job did not restore"
        settle_and_compare(reader, cluster, job, expected)

        wait_until("the forwarder to deliver everything",
                   lambda: fwd.metrics()["anomaly_forwarder_records_total"]
                   >= len(reader.values["alerts"])
                   and fwd.metrics()["anomaly_forwarder_pending_alerts"] == 0, 60)
        check_alertmanager(am, hook, reader.values["alerts"], inc_eps)
        assert fwd.metrics()["anomaly_forwarder_bad_records_total"] == 0
    finally:
        fwd.stop()
        reader.close()
        if job:
            cancel(cluster, job)


def check_prometheus_counters(prom: str, reader: OutputReader) -> None:
    """Prometheus's values of the job's counters equal what the committed topics hold."""
    reader.drain()
    alerts = [json.loads(a) for a in reader.values["alerts"]]
    drift = [json.loads(d) for d in reader.values["drift"]]
    opened = Counter(a["severity"] for a in alerts if a["kind"] == "open")
    want = {
        "events": len(reader.values["scores"]),
        "alert_records": len(alerts),
        "alerts_info": opened["info"],
        "alerts_warning": opened["warning"],
        "alerts_critical": opened["critical"],
        "dead_letters": len(reader.values["dead_letter"]),
        "late": len(reader.values["late"]),
        "drift_events": sum(1 for d in drift if d.get("type") == "drift"),
        "health_records": sum(1 for d in drift if d.get("type") == "health"),
    }
    assert want["events"] > 10_000 and want["alerts_critical"] >= 2 and want["dead_letters"] > 0

    def got() -> dict[str, float | None]:
        return {k: scalar(prom, f"sum({OP}{k})") for k in want}

    try:
        wait_until("Prometheus to scrape the counters the topics imply",
                   lambda: got() == {k: float(v) for k, v in want.items()}, 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: Prometheus {got()}, topics {want}") from None
    reasons = Counter(json.loads(d)["reason"] for d in reader.values["dead_letter"])
    for reason, n in reasons.items():
        assert scalar(prom, f"sum({OP}dead_letters_{reason})") == n, reason


def check_dashboard(prom: str, png: pathlib.Path) -> None:
    """Every query of the dashboard parses and returns series of this running job, and
    `dashboard-png` draws them."""
    dash = json.loads(DASHBOARD.read_text())
    empty = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            if not promql(prom, target["expr"]):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
    drawn = subprocess.run([sys.executable, "-m", "job", "dashboard-png", "--prometheus", prom,
                            "--minutes", "3", "--out", str(png)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    assert f"{len(dash['panels'])} panels" in drawn.stdout and png.stat().st_size > 20_000


def check_alertmanager(am: str, hook: Webhook, alerts: list[str],
                       inc_eps: list[list[dict[str, Any]]]) -> None:
    eps = episodes(alerts)
    still_open = {k for k, e in eps.items() if e[-1]["kind"] != "resolved"}

    def listed() -> list[dict[str, Any]]:
        return [a for a in http_json(f"{am}/api/v2/alerts")
                if a["labels"].get("alertname") == "EntityAnomaly"]

    wait_until("Alertmanager to list exactly the open episodes",
               lambda: {a["labels"]["alert_id"] for a in listed()} == still_open, 60)
    ids = [a["labels"]["alert_id"] for a in listed()]
    assert len(ids) == len(set(ids)), f"an episode twice in Alertmanager: {ids}"
    for ep in inc_eps:
        aid, last = ep[0]["alert_id"], ep[-1]
        states = hook.states(aid)
        firing = [s for s in states if s[0] == "firing"]
        # once firing under each severity the episode had, then resolved under its peak
        assert sorted(set(firing)) == sorted({("firing", r["severity"]) for r in ep
                                              if r["kind"] != "resolved"}), states
        assert len(firing) == len(set(firing)), f"{aid} notified firing twice: {states}"
        assert ("resolved", last["severity"]) in states, states
        note = hook.alert(aid)
        assert note["labels"]["entity"] == ep[0]["entity"]
        assert note["labels"]["direction"] == ep[0]["direction"]
        assert note["annotations"]["runbook_url"] == ep[0]["runbook_url"]
        assert note["annotations"]["dashboard_url"] == ep[0]["dashboard_url"]
        assert note["generatorURL"] == ep[0]["dashboard_url"]
        assert note["startsAt"].startswith(ep[0]["start_ts"][:19])


def test_ops_start_renders_a_valid_default_configuration(tmp_path):
    """`scripts/ops.sh start` as `make ops-start` runs it (the shipped Alertmanager routes with
    a webhook, the shipped rules): both become ready, Prometheus accepts its configuration
    and rules (promtool), Alertmanager runs the webhook route, and stop ends both."""
    subprocess.run([str(ROOT / "scripts" / "fetch_ops.sh")], check=True, timeout=600,
                   capture_output=True)
    script = [str(ROOT / "scripts" / "ops.sh")]
    d = tmp_path / "ops"
    hook = "http://127.0.0.1:9/hook"
    try:
        out = subprocess.run(
            [*script, "start", "--dir", str(d), "--prometheus-port", str(free_port()),
             "--alertmanager-port", str(free_port()), "--webhook", hook],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        prom, am = out.stdout.split()
        check = subprocess.run([str(ROOT / "deps" / "ops" / "bin" / "promtool"), "check", "config",
                                str(d / "prometheus.yml")], capture_output=True, text=True)
        assert check.returncode == 0 and "6 rules found" in check.stdout, check.stdout + check.stderr
        assert hook in (d / "alertmanager.yml").read_text()
        running = http_json(f"{am}/api/v2/status")["config"]["original"]  # (its URL is secret)
        assert "webhook_configs" in running and "send_resolved: true" in running
        rules = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {
            "AnomalyDetectorDown", "AnomalyAlertsUndelivered", "AnomalyForwarderDown"}
        pids = [int((d / f"{n}.pid").read_text()) for n in ("prometheus", "alertmanager")]
    finally:
        subprocess.run([*script, "stop", "--dir", str(d)], capture_output=True, timeout=60)
    for pid in pids:
        assert not pathlib.Path(f"/proc/{pid}").exists() or b"zombie" in pathlib.Path(
            f"/proc/{pid}/status").read_bytes().lower(), f"pid {pid} still running"
