"""``python -m job forward-alerts``: the job's committed alerts, from Kafka to Alertmanager.

A small process beside the job, not a sink inside it, for three reasons:

* it reads only what the job has **committed** (``isolation.level=read_committed``): a sink
  inside the job would post alerts of a checkpoint that may still fail, and a restore would
  then replay them; Alertmanager would have seen alerts the job's output never holds;
* a slow or unreachable Alertmanager delays this process only: it can never backpressure,
  stall a checkpoint or fail the job;
* it restarts on its own, without a savepoint, and several can run against an
  Alertmanager cluster.

At start it reads the alerts topic from its beginning (what the topic retains) up to what is
committed, rebuilding the open episodes, and only then sends: each episode's latest state
once (an episode that opened and resolved before the restart is sent resolved, never firing
again). Then it follows the topic. Every alert is sent with a label set fixed by its ``alert_id``
(job/alertmanager.py), so what it sends again after a restart merges into the alerts
Alertmanager already has: one alert per episode, whatever the restarts. Open episodes are sent
again every ``--hold-s / 4`` seconds.

A post is retried ``--retries`` times (0.5 s, 1 s, 2 s, ...); alerts still undelivered stay
pending (the latest version of each), counted, and go with the next post, at least 5 s later.
Nothing is dropped while the process lives; after a restart the topic supplies them again.

Its own metrics, for Prometheus, on ``--metrics-host:--metrics-port`` (``/metrics``):
``anomaly_forwarder_records_total``, ``..._bad_records_total``, ``..._alerts_sent_total``,
``..._post_failures_total``, ``..._pending_alerts``, ``..._open_episodes``,
``..._last_success_timestamp_seconds``.

It uses the job's configuration for Kafka (``kafka.bootstrap_servers``,
``kafka.alerts_topic``, ``kafka.properties``), so the same ``--config``/``--set`` serve both.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from job.alertmanager import AlertBook
from job.config import JobConfig

__all__ = ["SUMMARY", "USES_CONFIG", "Forwarder", "add_arguments", "run"]

SUMMARY = "send the job's committed alerts (Kafka) to Alertmanager's v2 API, idempotently"
USES_CONFIG = True

_COUNTERS = ("records", "bad_records", "alerts_sent", "post_failures")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alertmanager", action="append", default=[], metavar="URL",
        help="Alertmanager base URL, repeatable (each one gets every alert); "
        "default http://127.0.0.1:9093",
    )
    p.add_argument("--topic", help="alerts topic (default: kafka.alerts_topic)")
    p.add_argument(
        "--hold-s", type=float, default=240.0,
        help="a firing alert's endsAt is now + this; open episodes are sent again every "
        "quarter of it (default %(default)s)",
    )
    p.add_argument("--retries", type=int, default=3, help="retries of a failed post (default 3)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="default %(default)s")
    p.add_argument(
        "--metrics-port", type=int, default=9270, help="0: no metrics endpoint (default 9270)"
    )
    p.add_argument(
        "--until-idle", type=float, default=0.0, metavar="S",
        help="exit once S seconds pass with no new record and nothing pending (backfills, tests)",
    )


class Forwarder:
    """The loop's state: the book of open episodes, what is pending, the counters."""

    def __init__(self, urls: list[str], hold_s: float, retries: int) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.book = AlertBook(hold_s)
        self.retries = retries
        self.pending: dict[str, dict[str, Any]] = {}
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.last_success = 0.0
        self.next_post = 0.0
        self.next_resend = time.time() + hold_s / 4
        self.lock = threading.Lock()

    def add(self, alerts: list[dict[str, Any]]) -> None:
        for a in alerts:
            self.pending[json.dumps(a["labels"], sort_keys=True)] = a

    def record(self, value: bytes | None, where: str) -> None:
        self.counts["records"] += 1
        try:
            rec = json.loads(value or b"")
            self.add(self.book.apply(rec, now_ms=time.time() * 1000.0))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            self.counts["bad_records"] += 1
            print(f"forward-alerts: skipped a record at {where}: {type(e).__name__}: {e}",
                  file=sys.stderr)

    def tick(self) -> None:
        now = time.time()
        if now >= self.next_resend:
            self.add(self.book.firing(now * 1000.0))
            self.next_resend = now + self.book.hold_s / 4
        if self.pending and now >= self.next_post:
            self.flush()

    def flush(self) -> bool:
        alerts = list(self.pending.values())
        body = json.dumps(alerts).encode()
        for url in self.urls:
            if not _post(f"{url}/api/v2/alerts", body, self.retries):
                self.counts["post_failures"] += 1
                self.next_post = time.time() + 5.0
                return False
        with self.lock:
            self.counts["alerts_sent"] += len(alerts)
            self.pending.clear()
            self.last_success = time.time()
        return True

    def exposition(self) -> str:
        with self.lock:
            rows: list[tuple[str, str, float]] = [
                (f"anomaly_forwarder_{k}_total", "counter", v) for k, v in self.counts.items()
            ]
            rows += [
                ("anomaly_forwarder_pending_alerts", "gauge", len(self.pending)),
                ("anomaly_forwarder_open_episodes", "gauge", len(self.book)),
                ("anomaly_forwarder_last_success_timestamp_seconds", "gauge", self.last_success),
            ]
        return "".join(f"# TYPE {n} {t}\n{n} {v}\n" for n, t, v in rows)


def _post(url: str, body: bytes, retries: int) -> bool:
    delay = 0.5
    for attempt in range(retries + 1):
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if 200 <= r.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as e:
            print(f"forward-alerts: post to {url} failed (attempt {attempt + 1}): {e}",
                  file=sys.stderr)
        if attempt < retries:
            time.sleep(delay)
            delay *= 2
    return False


def _serve_metrics(fw: Forwarder, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = fw.exposition().encode()
            self.send_response(200 if self.path.startswith("/metrics") else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _consumer(cfg: JobConfig, topic: str) -> Any:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.kafka.bootstrap_servers,
        "group.id": f"{cfg.kafka.group_id}-alert-forwarder",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    }
    conf.update(dict(cfg.kafka.properties))
    consumer = Consumer(conf)
    meta = consumer.list_topics(topic, timeout=30)
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        consumer.close()
        raise SystemExit(f"error: alerts topic '{topic}' not found on {cfg.kafka.bootstrap_servers}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(found.partitions)])
    return consumer


def run(args: argparse.Namespace, cfg: JobConfig) -> int:
    topic = args.topic or cfg.kafka.alerts_topic
    fw = Forwarder(args.alertmanager or ["http://127.0.0.1:9093"], args.hold_s, args.retries)
    server = _serve_metrics(fw, args.metrics_host, args.metrics_port) if args.metrics_port else None
    consumer = _consumer(cfg, topic)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"forward-alerts: {topic} on {cfg.kafka.bootstrap_servers} -> {', '.join(fw.urls)}",
          file=sys.stderr, flush=True)
    idle_since = time.time()
    caught_up = False  # nothing is sent before the committed backlog is read
    try:
        while not stop.is_set():
            msgs = consumer.consume(500, timeout=0.5)
            for m in msgs:
                if m.error():
                    print(f"forward-alerts: {m.error()}", file=sys.stderr)
                    continue
                fw.record(m.value(), f"{m.topic()}[{m.partition()}]@{m.offset()}")
            caught_up = caught_up or not msgs
            if caught_up:
                fw.tick()
            if msgs or fw.pending:
                idle_since = time.time()
            elif args.until_idle and time.time() - idle_since >= args.until_idle:
                break
        if fw.pending:
            fw.flush()
    finally:
        consumer.close()
        if server is not None:
            server.shutdown()
    print(f"forward-alerts: {fw.counts}", file=sys.stderr)
    return 0 if not fw.pending else 1
