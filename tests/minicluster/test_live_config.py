"""Live configuration changes (udfs/core/live.py, udfs/detect_live.py).

Core: updates accumulate, validate like a configuration file, refuse what cannot change live.
MiniCluster: a running job (watched input folders, so it never ends by itself) takes a change
of the target alert rate from its control folder: the change is acknowledged on the health
output, and alerts decided after it carry the new configuration version and a lower
threshold, while those before it carry the old one. A malformed change goes to the
dead-letter output and changes nothing.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from job.config import load_config
from tests.configs import FAST
from udfs.core.config import DetectorConfig
from udfs.core.events import DeadLetter
from udfs.core.live import ControlUpdate, accumulate, parse_control, resolve
from udfs.core.typed import build, plain

T0 = 1_767_225_600_000
MIN = 60_000


# -- core ----------------------------------------------------------------------------------


def test_the_configuration_survives_the_round_trip_through_plain_data() -> None:
    cfg = load_config(None, [*FAST, "detector.rules.rules=[{metrics: 'cpu*', direction: dip}]"]).detector
    problems: list[str] = []
    assert build(DetectorConfig, plain(cfg), "detector", problems) == cfg and not problems


def test_updates_accumulate_and_each_is_versioned() -> None:
    base = DetectorConfig()
    first = parse_control('{"config_version": "a", "detector": {"threshold": {"target_alert_rate": 0.01}}}')
    second = parse_control('{"config_version": "b", "detector": {"alerts": {"cooldown_ms": 5}}}')
    assert isinstance(first, ControlUpdate) and isinstance(second, ControlUpdate)
    overrides = accumulate(accumulate({}, first), second)
    cfg, problems = resolve(base, overrides, second.version)
    assert not problems and cfg is not None
    assert (cfg.threshold.target_alert_rate, cfg.alerts.cooldown_ms, cfg.config_version) == (0.01, 5, "b")
    assert cfg.features == base.features  # untouched sections stay as they were


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "invalid_json"),
        ('{"detector": {"threshold": {}}}', "bad_control"),
        ('{"config_version": "2", "detector": {}}', "bad_control"),
        ('{"config_version": "2", "detector": {"threshold": {}}, "extra": 1}', "bad_control"),
    ],
)
def test_malformed_control_records_are_dead_letters(raw: str, expected: str) -> None:
    got = parse_control(raw)
    assert isinstance(got, DeadLetter) and got.reason == expected


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"threshold": {"target_alert_rate": 2.0}}, "detector.threshold"),
        ({"threshold": {"colour": 1}}, "detector.threshold.colour: unknown key"),
        ({"model": {"combine": "max"}}, "detector.model.combine: fixed at start"),
        ({"features": {"min_count": 2}}, "detector.features: not a live setting"),
        ({"alerts": {"global_max_per_hour": 3}}, "fixed at start"),
    ],
)
def test_invalid_or_non_live_changes_are_refused_with_the_key(changes: dict[str, Any], problem: str) -> None:
    cfg, problems = resolve(DetectorConfig(), changes, "2")
    assert cfg is None and any(problem in p for p in problems), problems


# -- a running job -------------------------------------------------------------------------


def _events(start_min: int, end_min: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for step in range(start_min * 3, end_min * 3):
        minute = step / 3
        for e in range(3):
            cpu = 40 + 10 * e + rng.gauss(0, 2)
            if e == 1 and (300 <= minute < 312 or 560 <= minute < 572):
                cpu += 40
            if e == 2 and (380 <= minute < 386 or 620 <= minute < 630):
                cpu += 40
            metrics = {"cpu": round(cpu, 3), "lat_ms": round(100 + rng.gauss(0, 5), 3)}
            out.append(json.dumps({"entity": f"e{e}", "ts": T0 + step * 20_000, "metrics": metrics}))
    return out


def _drop(folder: Path, name: str, lines: list[str]) -> None:
    """Write a file beside the watched folder and move it in whole (never half read)."""
    tmp = folder.parent / f".{name}"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.rename(folder / name)


class _Collector:
    """Reads the job's tagged records on a thread; ``wait_for`` polls with a deadline."""

    def __init__(self, results: Any) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._q: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._results = results
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._results:
                kind, _, payload = line.partition("\t")
                self._q.put((kind, json.loads(payload)))
        except Exception:  # the job is cancelled at the end of the test
            return

    def wait_for(self, what: str, pred: Any, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for kind, rec in self.records:
                if pred(kind, rec):
                    return rec
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [
                    (k, r.get("entity"), r.get("kind") or r.get("check"), (r.get("ts_ms", T0) - T0) // MIN)
                    for k, r in self.records
                ]
                raise AssertionError(f"no {what} within {timeout} s; got {seen}")
            try:
                self.records.append(self._q.get(timeout=min(left, 1.0)))
            except queue.Empty:
                continue


@pytest.mark.minicluster
def test_a_running_job_takes_a_new_threshold_and_its_alerts_say_so(tmp_path: Path) -> None:
    from job.pipeline import _tagged, build_pipeline, create_environment, file_source

    events_dir, control_dir = tmp_path / "events", tmp_path / "control"
    events_dir.mkdir()
    control_dir.mkdir()
    cfg = load_config(None, [*FAST, "execution.parallelism=1", "detector.config_version=1"])
    env = create_environment(cfg)
    outputs = build_pipeline(
        env,
        cfg,
        file_source(env, str(events_dir), "events", watch_ms=300),
        file_source(env, str(control_dir), "control", watch_ms=300),
    )
    tagged = [_tagged(outputs[n], n) for n in ("alerts", "drift", "dead_letter")]
    results = tagged[0].union(*tagged[1:]).execute_and_collect("live-config")
    try:
        got = _Collector(results)
        _drop(events_dir, "part1.jsonl", _events(0, 400, seed=1))
        # Its last incident: once it is out, what part 1 still holds is quiet.
        got.wait_for(
            "the last alert of part 1",
            lambda k, r: k == "alerts"
            and r["kind"] == "open"
            and r["entity"] == "e2"
            and r["ts_ms"] >= T0 + 380 * MIN,
        )
        _drop(control_dir, "bad.jsonl", ['{"config_version": "x", "detector": {"features": {"min_count": 2}}}'])
        dead = got.wait_for("rejected change", lambda k, r: k == "dead_letter")
        assert dead["reason"] == "bad_control" and "not a live setting" in dead["detail"]
        change = {"config_version": "2", "detector": {"threshold": {"rarity": 1.25}}}
        _drop(control_dir, "change.jsonl", [json.dumps(change)])
        applied = got.wait_for(
            "config_applied", lambda k, r: k == "drift" and r.get("check") == "config_applied"
        )
        assert applied["config_version"] == "2"
        _drop(events_dir, "part2.jsonl", _events(400, 700, seed=2))
        got.wait_for(
            "the last incident of part 2",
            lambda k, r: k == "alerts" and r["entity"] == "e2" and r["ts_ms"] >= T0 + 620 * MIN,
        )
    finally:
        results.close()
    opens = [r for k, r in got.records if k == "alerts" and r["kind"] == "open"]
    before = [r for r in opens if r["ts_ms"] <= T0 + 381 * MIN]
    after = [r for r in opens if r["ts_ms"] >= T0 + 400 * MIN]
    assert before and after
    assert {r["config_version"] for r in before} == {"1"}
    assert {r["config_version"] for r in after} == {"2"}
    # Half a decade lower: the entity's threshold sits lower.
    thr_before = {r["entity"]: r["threshold"] for r in before}
    lower = [r for r in after if r["entity"] in thr_before and r["threshold"] < thr_before[r["entity"]]]
    assert lower, (thr_before, [(r["entity"], r["threshold"]) for r in after])


def test_raising_the_drift_reset_epoch_rebuilds_the_matching_entities_references_once() -> None:
    from udfs.core.detector import EntityDetector
    from udfs.core.events import Event

    cfg = load_config(None, FAST).detector
    rng = random.Random(3)
    dets = {e: EntityDetector(e, cfg) for e in ("db-1", "web-1")}
    t = T0
    for _ in range(1500):
        t += 20_000
        for e, d in dets.items():
            d.on_event(Event(e, t, {"cpu": 40 + rng.gauss(0, 2)}))
    upd = parse_control('{"config_version": "2", "detector": {"drift": {"reset_epoch": 1, "reset_entities": "db-*"}}}')
    assert isinstance(upd, ControlUpdate)
    live, problems = resolve(cfg, upd.changes, upd.version)
    assert live is not None and not problems
    # The operator switches the detectors to the new configuration (as udfs/detect_live.py).
    dets = {e: EntityDetector.restore(e, live, d.snapshot()) for e, d in dets.items()}
    resets: dict[str, list[dict[str, Any]]] = {e: [] for e in dets}
    for _ in range(50):
        t += 20_000
        for e, d in dets.items():
            out = d.on_event(Event(e, t, {"cpu": 40 + rng.gauss(0, 2)}))
            resets[e] += [r for k, r in out if k == "drift" and r.get("check") == "drift_reference_reset"]
    assert [r["reset_epoch"] for r in resets["db-1"]] == [1]
    assert resets["web-1"] == []
    assert resolve(cfg, {"drift": {"window_events": 512}}, "3")[0] is None  # layout: not live


@pytest.mark.parametrize("value", ["1" + "0" * 400, ".nan", ".inf"])
def test_a_number_no_check_foresaw_is_a_problem_not_a_crash(value: str) -> None:
    import yaml

    changes = {"threshold": {"target_alert_rate": yaml.safe_load(value)}}
    cfg, problems = resolve(DetectorConfig(), changes, "2")
    assert cfg is None and any("finite number" in p for p in problems), problems


def test_judging_a_control_record_accumulates_through_the_stored_state() -> None:
    from udfs.core.live import judge_control

    base = DetectorConfig()
    stored, ack = judge_control(base, None, '{"config_version": "2", "detector": {"alerts": {"cooldown_ms": 5}}}')
    assert stored is not None and isinstance(ack, dict) and ack["check"] == "config_applied"
    stored2, _ = judge_control(base, stored, '{"config_version": "3", "detector": {"threshold": {"target_alert_rate": 0.01}}}')
    assert stored2 is not None and json.loads(stored2)["overrides"] == {
        "alerts": {"cooldown_ms": 5},
        "threshold": {"target_alert_rate": 0.01},
    }
    rejected, dead = judge_control(base, stored2, '{"config_version": "4", "detector": {"features": {}}}')
    assert rejected is None and isinstance(dead, DeadLetter) and dead.reason == "bad_control"
