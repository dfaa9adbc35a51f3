"""Alert scenarios on a local MiniCluster, through the job's own `run` path, equal to the
replay: a 30-minute incident, a flapping metric in its cooldown, a storm over the global
limit, an incident inside a maintenance window, and an operator's false-positive verdict
read from its own input file (``source.verdicts_path``), which also removes the repeat of a
false alarm.

The stream: 9 entities, one event a minute for 37.5 hours (the default 24 h baseline window
is warm after a day), incidents on day two. Each scenario's expectation is stated on the
alerts, and the whole output must equal :func:`udfs.core.replay.replay` followed by
:func:`udfs.core.ratelimit.gate_alerts` (alert ids included).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from job.commands.run import run_job as cmd_run
from job.config import JobConfig, load_config
from udfs.core.events import ParseConfig
from udfs.core.feedback import parse_event_or_verdict
from udfs.core.ratelimit import HOUR_MS, gate_alerts
from udfs.core.replay import replay

pytestmark = pytest.mark.minicluster

T0 = 1_767_225_600_000
MIN = 60_000
STORM = [f"storm{i}" for i in range(5)]
GLOBAL_MAX = 3
VERDICTS = [
    {  # after maint's suppressed incident: its next alert is judged more strictly
        "alert_id": "ops-ticket-1",
        "entity": "maint",
        "verdict": "false_positive",
        "reason": "the nightly batch job",
        "ts": T0 + 2000 * MIN,
    },
    {  # fp's first incident called a false positive: its repeat must not page again
        "alert_id": "a2a9c7def1888270",
        "entity": "fp",
        "verdict": "false_positive",
        "reason": "load test",
        "ts": T0 + 1810 * MIN,
    },
]


def _minutes(ts_ms: int) -> int:
    return (ts_ms - T0) // MIN


def _lines(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for m in range(2250):
        for e in ["incident", "flapper", "maint", "fp", *STORM]:
            cpu = 40 + rng.gauss(0, 2)
            if e == "incident" and 1650 <= m < 1680:  # 30 minutes, worse after 2 and 4
                cpu += 16 if m < 1652 else 35 if m < 1654 else 90
            if e == "flapper" and (1720 <= m < 1723 or 1738 <= m < 1741):
                cpu += 40  # the second burst falls in the first one's cooldown
            if e == "maint" and (1960 <= m < 1970 or 2150 <= m < 2153):
                cpu += 40  # the first inside the maintenance window
            if e == "fp" and (1790 <= m < 1795 or 2050 <= m < 2053):
                cpu += 45  # the same incident twice (the repeat shorter)
            if e in STORM and 1900 <= m < 1904:
                cpu += 40  # every storm entity at once
            metrics = {"cpu": round(cpu, 3), "lat_ms": round(100 + rng.gauss(0, 5), 3)}
            out.append(json.dumps({"entity": e, "ts": T0 + m * MIN, "metrics": metrics}))
    return out


def _config(tmp: Path, *extra: str) -> JobConfig:
    return load_config(
        None,
        [
            "detector.threshold.min_events=200",
            # Three decades (one event in 1,000) and a 15-minute cooldown: the noise of these
            # short-lived entities stays below the scenarios it frames.
            "detector.threshold.rarity=3.0",
            "detector.alerts.cooldown_ms=900000",
            "detector.model.min_calibration_events=50",
            f"detector.alerts.global_max_per_hour={GLOBAL_MAX}",
            "detector.feedback.fp_step=2.5",
            "detector.feedback.max_raise=2.5",
            # An incident must not teach the entity that its repeat is ordinary.
            "detector.model.clip_calibration=true",
            "detector.maintenance.windows=[{entities: 'maint', start: '2026-01-02T08:30:00Z', "
            "end: '2026-01-02T09:00:00Z'}]",
            "source.type=file",
            f"source.path={tmp / 'events.jsonl'}",
            f"sink.dir={tmp / 'out'}",
            *extra,
        ],
    )


def _expected(lines: list[str], cfg: JobConfig) -> dict[str, Counter[str]]:
    records = [parse_event_or_verdict(line, ParseConfig()) for line in lines]
    outputs = gate_alerts(list(replay(records, cfg.detector)), GLOBAL_MAX)
    return {
        name: Counter(json.dumps(r, sort_keys=True) for k, r in outputs if k == kind)
        for name, kind in (("alerts", "alert"), ("drift", "drift"))
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("scenarios")
    lines = _lines()
    (tmp / "events.jsonl").write_text("\n".join(lines) + "\n")
    (tmp / "verdicts.jsonl").write_text("".join(json.dumps(v) + "\n" for v in VERDICTS))
    cfg = _config(tmp, f"source.verdicts_path={tmp / 'verdicts.jsonl'}")
    counts = cmd_run(cfg, "alert-scenarios")
    got = {
        name: Counter((tmp / "out" / f"{name}.jsonl").read_text().splitlines())
        for name in ("alerts", "drift")
    }
    # The verdicts are read before the entities reach their ts: the replay takes them first.
    expected = _expected([*(json.dumps(v) for v in VERDICTS), *lines], cfg)
    without_verdict = _expected(lines, cfg)
    alerts = sorted((json.loads(a) for a in got["alerts"].elements()), key=lambda r: r["ts_ms"])
    return {
        "got": got,
        "expected": expected,
        "without_verdict": without_verdict,
        "alerts": alerts,
        "counts": counts,
    }


def _of(alerts: list[dict[str, Any]], entity: str, kind: str, lo: int, hi: int) -> list[dict[str, Any]]:
    return [
        a for a in alerts if a["entity"] == entity and a["kind"] == kind and lo <= _minutes(a["ts_ms"]) < hi
    ]


def test_the_job_equals_the_replay_alert_ids_included(run: dict[str, Any]) -> None:
    assert run["got"]["alerts"] == run["expected"]["alerts"]
    assert run["got"]["drift"] == run["expected"]["drift"]
    assert run["counts"]["alerts"] == sum(run["expected"]["alerts"].values()) > 10


def test_a_30_minute_incident_is_one_episode(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    [opened] = _of(alerts, "incident", "open", 1650, 1680)
    episode = [a for a in alerts if a["alert_id"] == opened["alert_id"]]
    assert [a["kind"] for a in episode if a["kind"] == "resolved"] == ["resolved"]
    levels = ["info", "warning", "critical"]
    sev = [levels.index(a["severity"]) for a in episode if a["kind"] in ("open", "escalate")]
    assert sev == sorted(set(sev))  # an escalation only ever raises the severity
    assert not _of(alerts, "incident", "open", 1680, 1700)


def test_a_flapping_metric_in_its_cooldown_opens_no_second_alert(run: dict[str, Any]) -> None:
    [first] = _of(run["alerts"], "flapper", "open", 1715, 1760)
    assert _minutes(first["ts_ms"]) == 1720


def test_a_storm_over_the_global_limit_is_cut_and_counted(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    paging = [a["ts_ms"] for a in alerts if a["kind"] in ("open", "escalate")]
    for t in paging:  # never more than the limit in any sliding hour
        assert sum(1 for u in paging if t - HOUR_MS < u <= t) <= GLOBAL_MAX
    storm_opens = [a for e in STORM for a in _of(alerts, e, "open", 1900, 1905)]
    assert 1 <= len(storm_opens) <= GLOBAL_MAX
    storms = [json.loads(d) for d in run["got"]["drift"] if '"alert_storm"' in d]
    assert [_minutes(s["ts_ms"]) for s in storms if 1900 <= _minutes(s["ts_ms"]) < 1905] == [1900]
    after = [a for a in alerts if a["ts_ms"] > T0 + 1900 * MIN]
    carried = next(a for a in after if a.get("suppressed_global"))
    assert carried["suppressed_global"] >= len(STORM) - len(storm_opens)


def test_an_incident_in_a_maintenance_window_is_suppressed_and_counted(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    assert not _of(alerts, "maint", "open", 1950, 2000)
    [later] = _of(alerts, "maint", "open", 2150, 2160)
    assert later["suppressed_before"] == 10  # one per anomalous minute held back


def test_a_false_positive_verdict_raises_the_entitys_threshold_in_later_alerts(
    run: dict[str, Any],
) -> None:
    [later] = _of(run["alerts"], "maint", "open", 2150, 2160)
    [plain] = [
        json.loads(a)
        for a in run["without_verdict"]["alerts"]
        if '"maint"' in a and json.loads(a)["alert_id"] == later["alert_id"] and '"open"' in a
    ]
    assert later["threshold"] > plain["threshold"]
    assert later["threshold_offset"] > 1.0 and "threshold_offset" not in plain


def test_a_false_positive_verdict_removes_a_repeat_of_the_same_alert(run: dict[str, Any]) -> None:
    alerts = run["alerts"]
    [first] = _of(alerts, "fp", "open", 1790, 1795)
    assert first["alert_id"] == VERDICTS[1]["alert_id"]  # the alert the operator judged
    plain = [json.loads(a) for a in run["without_verdict"]["alerts"]]
    assert _of(plain, "fp", "open", 2050, 2060)  # without the verdict the repeat pages
    assert not _of(alerts, "fp", "open", 2050, 2060)
