"""Alert episodes as Alertmanager alerts (job/alertmanager.py) and the forwarder's delivery
(job/commands/forward_alerts.py): labels fixed per episode, order of the alerts an escalation
and a resolution call for, idempotence across a replay, bounded retries that keep what
failed. The real Alertmanager is in tests/e2e/test_ops.py; here a local HTTP server stands
in for one that fails."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from job.alertmanager import ALERTNAME, AlertBook, to_alertmanager
from job.commands.forward_alerts import Forwarder

T0 = 1_767_253_020_000  # 2026-01-01T07:37:00Z
NOW = T0 + 3_600_000


def rec(kind: str, severity: str = "warning", ts_ms: int = T0, aid: str = "a1",
        feature: str = "cpu.baseline", **extra: Any) -> dict[str, Any]:
    return {"alert_id": aid, "kind": kind, "entity": "srv-1", "severity": severity,
            "direction": "spike", "start_ts": "2026-01-01T07:37:00.000Z", "ts_ms": ts_ms,
            "score": 0.9999, "threshold": 0.999, "runbook_url": "https://rb/srv-1",
            "dashboard_url": "https://dash/srv-1",
            "features": [{"feature": feature, "actual": 97.5, "expected": 40.25, "z": 7.1}],
            **extra}


def test_open_fires_with_the_episode_labels_and_the_explanation() -> None:
    [alert] = AlertBook(hold_s=240).apply(rec("open", feature="disk.io.5m.zscore"), NOW)
    assert alert["labels"] == {"alertname": ALERTNAME, "alert_id": "a1", "entity": "srv-1",
                               "severity": "warning", "direction": "spike", "metric": "disk.io"}
    assert alert["startsAt"] == "2026-01-01T07:37:00.000Z"
    assert alert["endsAt"] == "2026-01-01T08:41:00.000Z"  # now + hold
    assert alert["generatorURL"] == "https://dash/srv-1"
    notes = alert["annotations"]
    assert notes["runbook_url"] == "https://rb/srv-1"
    assert notes["dashboard_url"] == "https://dash/srv-1"
    assert "97.5" in notes["description"] and "expected 40.25" in notes["description"]
    assert notes["summary"] == "srv-1: disk.io spike (warning)"


def test_escalation_ends_the_old_severity_and_fires_the_new_one() -> None:
    book = AlertBook(hold_s=240)
    book.apply(rec("open", "info"), NOW)
    ended, firing = book.apply(rec("escalate", "critical", ts_ms=T0 + 60_000,
                                   feature="latency_ms.range"), NOW)
    assert ended["labels"]["severity"] == "info"
    assert ended["endsAt"] == "2026-01-01T07:38:00.000Z"
    assert firing["labels"]["severity"] == "critical"
    # the labels stay those of the open record; the explanation follows the latest record
    assert firing["labels"]["metric"] == "cpu"
    assert "latency_ms.range" in firing["annotations"]["description"]
    assert [a["labels"]["severity"] for a in book.firing(NOW)] == ["critical"]


def test_resolution_ends_the_alert_at_its_event_time_never_in_the_future() -> None:
    book = AlertBook()
    book.apply(rec("open"), NOW)
    [done] = book.apply(rec("resolved", ts_ms=T0 + 600_000), NOW)
    assert done["endsAt"] == "2026-01-01T07:47:00.000Z"
    assert len(book) == 0 and book.firing(NOW) == []
    book.apply(rec("open", aid="a2"), NOW)
    [future] = book.apply(rec("resolved", aid="a2", ts_ms=NOW + 86_400_000), NOW)
    assert future["endsAt"] == "2026-01-01T08:37:00.000Z"  # the wall clock, not tomorrow


def test_a_replay_sends_the_same_label_sets() -> None:
    lines = [json.dumps(r) for r in (
        rec("open", "info"), rec("escalate", "critical", ts_ms=T0 + 60_000),
        rec("open", aid="b", severity="warning"), rec("resolved", "critical", ts_ms=T0 + 9e5))]
    first = to_alertmanager(lines, NOW)
    again = to_alertmanager(lines, NOW + 5_000)
    assert [a["labels"] for a in first] == [a["labels"] for a in again]
    keys = {json.dumps(a["labels"], sort_keys=True) for a in first}
    assert len(keys) == 3  # a1 info, a1 critical, b warning: one alert per (episode, severity)


def test_an_episode_seen_first_by_its_escalation_still_fires() -> None:
    [alert] = AlertBook().apply(rec("escalate", "critical"), NOW)
    assert alert["labels"]["severity"] == "critical"


class Flaky:
    """A local HTTP endpoint that answers 503 to the first ``fail`` posts, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail, self.bodies = fail, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = outer.fail <= 0
                outer.fail -= 1
                if ok:
                    outer.bodies.append(json.loads(body))
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_failed_posts_are_retried_counted_and_kept() -> None:
    am = Flaky(fail=3)
    try:
        fw = Forwarder([am.url], hold_s=240, retries=1)
        fw.record(json.dumps(rec("open")).encode(), "t[0]@0")
        fw.record(b"{not json", "t[0]@1")
        assert fw.counts["bad_records"] == 1
        assert not fw.flush()  # 2 attempts, both refused
        assert fw.counts["post_failures"] == 1 and len(fw.pending) == 1
        fw.record(json.dumps(rec("escalate", "critical")).encode(), "t[0]@2")
        assert fw.flush()  # the third refusal, then a success on the retry
        assert fw.pending == {}
        [body] = am.bodies  # one post: the latest version of each alert
        ends = {a["labels"]["severity"]: a["endsAt"] for a in body}
        assert ends["warning"] == "2026-01-01T07:37:00.000Z"  # the warning alert ended
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        assert ends["critical"] > now  # still firing: the wall clock + hold
        text = fw.exposition()
        assert "anomaly_forwarder_post_failures_total 1\n" in text
        assert "anomaly_forwarder_alerts_sent_total 2\n" in text
        assert "anomaly_forwarder_open_episodes 1\n" in text
    finally:
        am.server.shutdown()
