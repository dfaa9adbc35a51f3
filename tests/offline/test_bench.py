"""The benchmark harness's pure parts (no timing assertions, no Flink unless marked)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from state.codec import encode
from tools import bench
from tools.bench.common import WITH_FEATURES
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event, ParseConfig, parse_line


def test_event_stream_is_deterministic_and_valid() -> None:
    a = bench.generate_events(64, metrics=4, entities=8, seed=3)
    assert a == bench.generate_events(64, metrics=4, entities=8, seed=3)
    assert a != bench.generate_events(64, metrics=4, entities=8, seed=4)
    events = [parse_line(line, ParseConfig()) for line in a]
    assert all(isinstance(e, Event) for e in events)
    assert [e.entity for e in events[:9]] == [bench.entity_name(i % 8) for i in range(9)]
    assert all(sorted(e.metrics) == ["m00", "m01", "m02", "m03"] for e in events)
    for ent in {e.entity for e in events}:
        ts = [e.ts_ms for e in events if e.entity == ent]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)


def test_a_shorter_stream_is_a_prefix_of_a_longer_one() -> None:
    # N1 and N2 runs of the marginal rate read the same first N1 events.
    assert bench.generate_events(100)[:40] == bench.generate_events(40)


def test_event_index_inverts_the_stream_layout() -> None:
    lines = bench.generate_events(50, entities=7, interval_ms=15_000)
    for i, line in enumerate(lines):
        obj = json.loads(line)
        assert bench.event_index(obj["entity"], obj["ts"], entities=7, interval_ms=15_000) == i
    with pytest.raises(ValueError):
        bench.event_index("ent-00001", bench.T0_MS + 5, entities=7)


def test_marginal_rate_cancels_a_fixed_cost() -> None:
    # 5 s of start-up, then 2,000 events per second: the marginal rate is exactly 2,000.
    def t(n: int) -> float:
        return 5.0 + n / 2000.0

    assert bench.marginal_rate(1000, t(1000), 9000, t(9000)) == pytest.approx(2000.0)
    assert bench.fixed_cost(1000, t(1000), 2000.0) == pytest.approx(5.0)
    assert bench.marginal_rate(1000, 7.0, 5000, 9.0) == 2000.0


def test_marginal_rate_refuses_meaningless_inputs() -> None:
    with pytest.raises(ValueError):
        bench.marginal_rate(5000, 1.0, 5000, 2.0)
    assert bench.marginal_rate(1000, 9.0, 5000, 8.5) is None  # noise larger than the signal
    assert bench.fixed_cost(1000, 9.0, None) is None


def test_fastest_keeps_the_smallest_time_per_size() -> None:
    assert bench.fastest([(10, 3.0), (20, 5.0), (10, 2.5), (20, 6.0)]) == {10: 2.5, 20: 5.0}


def test_percentiles_equal_numpy_linear() -> None:
    values = [float(v) for v in (7, 1, 3, 9, 4, 4, 12, 0.5)]
    qs = [0, 25, 50, 90, 99, 100]
    assert bench.percentiles(values, qs) == pytest.approx(list(np.percentile(values, qs)))
    with pytest.raises(ValueError):
        bench.percentiles([], [50])


def test_latency_stats_from_pace_and_arrival_records() -> None:
    ms = 1_000_000
    rate = 100.0  # one event every 10 ms
    sent = [i * 10 * ms + (2 * ms if i == 5 else 0) for i in range(20)]
    pace = {"t0_ns": 0, "rate": rate, "sent_ns": sent}
    # Every event comes out 30 ms after it was sent, event 7 after 80 ms.
    arrivals = [[i, sent[i] + (80 if i == 7 else 30) * ms] for i in range(20)]
    st = bench.latency_stats(pace, arrivals, warmup_s=0.02, tail_events=2)
    assert st["samples"] == 16  # events 2..17
    assert st["from_send_ms"]["p50"] == pytest.approx(30.0)
    assert st["from_send_ms"]["max"] == pytest.approx(80.0)
    # Event 5 left 2 ms late: counted from its schedule it waited 32 ms.
    sched = sorted((a - i * 10 * ms) / ms for i, a in arrivals if 2 <= i < 18)
    assert st["from_schedule_ms"]["p99"] == pytest.approx(bench.percentiles(sched, [99])[0])
    assert st["achieved_send_rate"] == pytest.approx(19 / 0.19)


def test_plain_loops_report_every_mark() -> None:
    lines = bench.generate_events(48, metrics=2, entities=4)
    for codec in (False, True):
        marks = bench.plain_loop(lines, DetectorConfig(), codec=codec, marks=(16, 48))
        assert [m[0] for m in marks] == [16, 48]
        assert all(w >= 0.0 and c >= 0.0 for _, w, c in marks)
    row = bench.measure_plain(lines, DetectorConfig(), 16, 48, codec=True, repeats=1)
    assert row["n1"] == 16 and row["n2"] == 48 and row["eps"] > 0


def test_the_operator_loop_stores_what_the_operator_stores() -> None:
    lines = bench.generate_events(40, metrics=2, entities=4)
    states: dict[str, bytes] = {}
    bench.operator_loop(lines, DetectorConfig(), ParseConfig(), (), states_out=states)
    assert sorted(states) == [bench.entity_name(e) for e in range(4)]
    assert all(isinstance(v, bytes) and len(v) > 1000 for v in states.values())
    # ... which is each entity's detector (as the operator builds it) after all its events.
    detectors: dict[str, EntityDetector] = {}
    for line in lines:
        ev = parse_line(line, ParseConfig())
        assert isinstance(ev, Event)
        det = EntityDetector(ev.entity, DetectorConfig(), WITH_FEATURES)
        detectors.setdefault(ev.entity, det).on_event(ev)
    assert {e: encode(d.snapshot()) for e, d in detectors.items()} == states


def test_the_state_headline_counts_a_full_journal() -> None:
    s = bench.state_growth(2, DetectorConfig(), hours=0.2)
    payload = len(bench.generate_events(1, metrics=2, entities=1)[0])  # about one event's JSON
    assert s["steady_bytes_with_journal"] - s["steady_bytes"] == s["journal_max_bytes"]
    assert s["journal_max_bytes"] >= (bench.SNAPSHOT_EVERY - 1) * (payload - 40)


def test_state_growth_reports_the_encoded_size() -> None:
    s = bench.state_growth(2, DetectorConfig(), hours=0.2)
    assert s["metrics"] == 2
    assert s["steady_bytes"] == s["growth"][-1]["bytes"] > 0
    assert s["events"] == int(0.2 * 3_600_000 / 20_000)


def test_state_stops_growing_at_steady_state_hours_and_not_before() -> None:
    """At the defaults (20 s apart) the drift monitor's samples are complete after 100 +
    2,000 + 2,048 + 1,024 events and the extremes' 8 blocks after 20,000: the state no longer
    grows after the later; 10 h before the drift monitor is complete it is clearly smaller."""
    cfg = DetectorConfig()
    hours = bench.steady_state_hours(cfg)
    assert hours == 20_000 * 20 / 3600 + 1
    steady = bench.state_growth(1, cfg, hours=hours)["steady_bytes"]
    later = bench.state_growth(1, cfg, hours=hours + 3)["steady_bytes"]
    early = bench.state_growth(1, cfg, hours=5172 * 20 / 3600 + 1 - 10)["steady_bytes"]
    assert abs(later - steady) <= 64
    assert steady - early > 400


def test_plan_sizes_are_whole_rounds_of_entities() -> None:
    plan = bench.Plan.for_mode(quick=True)
    n1, n2 = plan.sizes(1234.0)
    assert n1 % plan.entities == 0 and n2 % plan.entities == 0 and n2 > n1
    assert not plan.cluster and bench.Plan.for_mode(quick=False).cluster


def _fake_results() -> dict[str, object]:
    return {
        "date": "2026-01-01",
        "quick": True,
        "machine": {"cpu_model": "x", "cores": 2},
        "plain": [
            {"variant": "core", "metrics": 4, "n1": 10, "n2": 20, "eps": 1000.0, "eps_per_cpu_s": 1250.0},
            {"variant": "operator", "metrics": 4, "n1": 10, "n2": 20, "eps": 4000.0, "eps_per_cpu_s": 5000.0},
        ],
        "throughput": [
            {
                "mode": "thread", "metrics": 4, "n1": 10, "n2": 20, "eps": 800.0,
                "eps_per_cpu_s": 1000.0, "cores_used": 0.8, "fixed_cost_s": 3.0,
            }
        ],
        "naive": {"metrics": 4, "n1": 1, "n2": 2, "eps": 8.0, "eps_per_cpu_s": 10.0},
        "latency": {
            "target_rate": 400.0, "entities": 16, "samples": 100,
            "from_send_ms": {"p50": 50.0, "p90": 70.0, "p99": 90.0, "max": 99.0},
            "from_schedule_ms": {"p50": 51.0, "p99": 91.0},
        },
        "state": {"per_metrics": [
            {"metrics": 4, "steady_bytes": 26000, "steady_bytes_with_journal": 28000,
             "growth": [{"hours": 1, "bytes": 20000}],
             "snapshot_encode_us": 1.0, "decode_restore_us": 2.0, "events": 9}
        ]},
        "errors": [],
    }


def test_report_has_the_required_keys_and_ratios() -> None:
    rep = bench.build_report(_fake_results())
    for key in bench.REQUIRED_KEYS:
        assert key in rep
    assert rep["job_vs_plain"] == pytest.approx(0.8)
    assert rep["job_vs_naive"] == pytest.approx(100.0)
    assert rep["job_vs_plain_cpu"] == pytest.approx(0.8)
    assert rep["state_bytes_per_entity"] == 28000
    assert rep["targets"]["job_vs_naive"]["met"] is True
    assert rep["targets"]["job_eps"]["met"] is False
    assert rep["targets"]["state_bytes_per_entity"]["met"] is True
    json.dumps(rep)
    md = bench.render_markdown(rep)
    assert "| job / plain loop (core) | 0.80 |" in md
    assert rep["job_vs_plain_operator"] == pytest.approx(0.2)


def test_report_of_a_run_where_everything_failed_still_has_the_keys() -> None:
    rep = bench.build_report({"machine": {}, "errors": ["thread: boom"]})
    assert all(k in rep for k in bench.REQUIRED_KEYS)
    assert rep["job_vs_plain"] is None and rep["targets"]["job_eps"]["met"] is None
    assert "thread: boom" in bench.render_markdown(rep)


def test_main_writes_json_and_markdown_without_flink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = dataclasses.replace(
        bench.Plan.for_mode(quick=True),
        metrics=(1, 4),
        job_seconds=0.01,
        base_seconds=0.01,
        state_hours=0.1,
        profile_events=1_024,  # (enough 0.5 ms samples to see the parser every time)
    )
    monkeypatch.setattr(bench.Plan, "for_mode", classmethod(lambda cls, quick: tiny))
    monkeypatch.setattr(bench.run, "PROJECT_ROOT", tmp_path)  # bench/tmp goes there
    args = argparse.Namespace(quick=True, out=str(tmp_path / "results"), only="plain,state,profile", keep_tmp=False)
    assert bench.main(args) == 0
    files = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".md")
    rep = json.loads((tmp_path / "results" / files[0]).read_text())
    for key in bench.REQUIRED_KEYS:
        assert key in rep
    assert rep["plain_eps"] > 0 and rep["state_bytes_per_entity"] > 0
    assert rep["job_eps"] is None  # no Flink part ran
    if "detector" not in bench.compiled_modules():  # (compiled: no Python frames of its own)
        assert {r["what"] for r in rep["profile"]["by_phase"]} & {"on_event", "restore"}
    else:
        assert {r["what"] for r in rep["profile"]["by_phase"]} & {"parse_event_or_verdict"}
    shares = sum(r["share"] for r in rep["profile"]["by_module"])
    assert math.isclose(shares, 1.0, abs_tol=0.01)


@pytest.mark.minicluster
def test_the_job_runs_into_a_discarding_sink(tmp_path: Path) -> None:
    path = bench.write_lines(tmp_path / "in.jsonl", bench.generate_events(96, metrics=2))
    t = bench.run_detect_job(path, ["execution.mode=thread"], "bench-smoke")
    assert t["wall_s"] > 0 and t["cpu_s"] > 0 and t["net_runtime_s"] > 0


def test_bounds_add_the_floor_to_the_core_run_in_the_jvm() -> None:
    # Plain core 100 us per event (10,000 per CPU-s), of which 20 us parse in-process; the
    # embedded loop costs 1.5x. Floors: pipeline 50 us (20,000/s), single 20 us (50,000/s).
    embedded = {
        "in_process": {"parse_us": 20.0, "detect_us": 80.0},
        "in_job": {"parse_us": 30.0, "detect_us": 120.0},
    }
    floor = [{"shape": "pipeline", "eps_per_cpu_s": 20_000.0}, {"shape": "single", "eps_per_cpu_s": 50_000.0}]
    b = bench.job_bounds(10_000.0, floor, embedded)
    # Neither floor parses: the whole core runs behind each. pipeline: 50 + 1.5 * 100 =
    # 200 us; single: 20 + 1.5 * 100 = 170 us.
    assert b["pipeline"]["floor_us"] == pytest.approx(50.0)
    assert b["pipeline"]["core_us"] == pytest.approx(150.0)
    assert b["pipeline"]["eps_per_cpu_s"] == pytest.approx(1e6 / 200.0)
    assert b["pipeline"]["vs_plain"] == pytest.approx(100.0 / 200.0)
    assert b["single"]["core_us"] == pytest.approx(150.0)
    assert b["single"]["vs_plain"] == pytest.approx(100.0 / 170.0)
    # A missing measurement gives no bound rather than a wrong one.
    assert bench.job_bounds(None, floor, embedded) == {}
    assert bench.job_bounds(10_000.0, floor, {}) == {}
    assert "single" not in bench.job_bounds(10_000.0, [{"shape": "single", "eps_per_cpu_s": None}], embedded)


def test_report_carries_the_bounds_next_to_the_targets() -> None:
    res = _fake_results()
    res["floor"] = [
        {"shape": "pipeline", "mode": "thread", "metrics": 4, "n1": 10, "n2": 20, "eps": 9000.0, "eps_per_cpu_s": 5000.0},
        {"shape": "single", "mode": "thread", "metrics": 4, "n1": 10, "n2": 20, "eps": 30000.0, "eps_per_cpu_s": 20000.0},
    ]
    res["embedded"] = {
        "events": 100, "factor": 1.2,
        "in_process": {"parse_us": 100.0, "detect_us": 700.0},
        "in_job": {"parse_us": 120.0, "detect_us": 840.0},
    }
    rep = bench.build_report(res)
    # Plain core 800 us (1,250 per CPU-s). pipeline: 200 + 1.2 * 800 = 1,160 us;
    # single: 50 + 1.2 * 800 = 1,010 us, the least costly: the bound.
    assert rep["bound_eps_per_cpu_s"] == pytest.approx(1e6 / 1010.0)
    assert rep["bound_vs_plain_cpu"] == pytest.approx(800.0 / 1010.0)
    assert rep["targets"]["job_vs_plain"]["bound"] == rep["bound_vs_plain_cpu"]
    assert rep["targets"]["job_eps"]["bound"] == rep["bound_eps_per_cpu_s"]
    md = bench.render_markdown(rep)
    assert "## What bounds the job" in md
    assert "| single | 30,000 | 20,000 | 50.0 | 960.0 | 990 | 0.79 |" in md
    json.dumps(rep)


@pytest.mark.minicluster
def test_floor_jobs_hand_every_event_to_the_null_operator(tmp_path: Path) -> None:
    lines = bench.generate_events(96, metrics=2)
    path = bench.write_lines(tmp_path / "in.jsonl", lines)
    for shape in bench.FLOOR_SHAPES:
        counts = tmp_path / shape
        counts.mkdir()
        t = bench.run_floor_job(path, shape, f"bench-floor-{shape}", count_dir=str(counts))
        assert t["wall_s"] > 0 and t["cpu_s"] > 0
        # A floor that lost events would look fast: every line reaches the operator.
        assert sum(int(p.read_text()) for p in counts.iterdir()) == len(lines), shape
    with pytest.raises(ValueError, match="unknown floor shape"):
        bench.run_floor_job(path, "nope", "x")


@pytest.mark.minicluster
def test_the_core_loop_runs_embedded_in_a_thread_mode_task(tmp_path: Path) -> None:
    lines = bench.generate_events(160, metrics=2)
    path = bench.write_lines(tmp_path / "in.jsonl", lines)
    got = bench.run_embedded_core(path, reps=1)
    assert got["events"] == len(lines)
    assert got["parse_us"] > 0 and got["detect_us"] > 0


def test_a_zipf_stream_is_skewed_and_in_order_per_entity() -> None:
    lines = bench.generate_events(4_000, metrics=1, entities=64, zipf_s=1.1)
    assert lines == bench.generate_events(4_000, metrics=1, entities=64, zipf_s=1.1)
    events = [parse_line(line, ParseConfig()) for line in lines]
    counts: dict[str, int] = {}
    for e in events:
        counts[e.entity] = counts.get(e.entity, 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    # The busiest entity has several times its uniform share (1/64) and the first is busiest.
    assert ranked[0] > 8 * len(events) / 64
    assert counts[bench.entity_name(0)] == ranked[0]
    assert all(0 <= int(name.rsplit("-", 1)[1]) < 64 for name in counts)
    ts = [e.ts_ms for e in events]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # in order overall, so per entity


def test_scale_lines_report_every_entity_once_per_round_in_order() -> None:
    from tools.bench.scale import scale_lines

    lines = list(scale_lines(50, 3, metrics=2))
    events = [parse_line(line, ParseConfig()) for line in lines]
    assert [e.entity for e in events] == [bench.entity_name(i % 50) for i in range(150)]
    ts = [e.ts_ms for e in events]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert lines == list(scale_lines(50, 3, metrics=2))


def test_steady_rate_leaves_out_the_start_and_the_end() -> None:
    from tools.bench.standalone import steady_rate as _steady

    # 1,000 events in 10 s and 10 CPU-s, with a slow first second and a slow end.
    samples = [(0.0, 0, 0.0), (5.0, 10, 5.0)]
    samples += [(5.0 + k, 10 + 100 * k, 5.0 + 0.5 * k) for k in range(1, 10)]
    samples += [(30.0, 1_000, 40.0)]
    got = _steady(samples, 1_000)
    # from the first sample at >= 200 events (210 at t=7) to the last at <= 950 (910 at t=14)
    assert got["events"] == 700
    assert got["eps"] == pytest.approx(100.0)
    assert got["eps_per_cpu_s"] == pytest.approx(200.0)
    assert _steady(samples[:2], 1_000)["eps"] is None


def test_the_event_counters_are_summed_from_a_prometheus_scrape() -> None:
    from tools.bench.standalone import events_in

    name = "flink_taskmanager_job_task_operator_anomaly_events"
    scrape = "\n".join([
        f"# HELP {name} events (scope: taskmanager_job_task_operator_anomaly)",
        f"# TYPE {name} gauge",
        f'{name}{{job_name="j",task_name="detect -> (Map, Map)",subtask_index="0",}} 1500.0',
        f'{name}{{job_name="j",task_name="detect -> (Map, Map)",subtask_index="1",}} 2.5E3',
        'flink_taskmanager_job_task_operator_anomaly_events_late{subtask_index="0",} 7.0',
        'flink_taskmanager_Status_JVM_CPU_Load{tm_id="x",} 0.5',
    ])
    assert events_in(scrape) == 4000.0
    assert events_in("") == 0.0


def test_cluster_summary_is_the_median_with_its_spread() -> None:
    from tools.bench.cluster import _summary

    reps = [
        {"p1": {"eps_per_cpu_s": p1, "eps": 1.0}, "p2": {"eps_per_cpu_s": p2, "eps": 2.0},
         "p2_over_p1_per_cpu_s": p2 / p1, "p2_over_p1_wall": 2.0}
        for p1, p2 in ((100.0, 90.0), (100.0, 80.0), (100.0, 99.0))
    ]
    s = _summary(reps)
    assert s["p2_over_p1_per_cpu_s"] == pytest.approx(0.9)
    assert s["ratio_spread"] == pytest.approx(0.99 / 0.8 - 1.0)
    assert s["p2_eps_per_cpu_s"] == pytest.approx(90.0)


def test_latency_and_scale_out_targets_are_met_from_the_right_side() -> None:
    res = _fake_results()
    res["cluster"] = {"p2_over_p1_per_cpu_s": 0.85}
    rep = bench.build_report(res)
    assert rep["targets"]["latency_ms_p99"]["met"] is True  # 90 ms <= 100
    assert rep["targets"]["p2_over_p1_per_cpu_s"]["met"] is True
    res["latency"]["from_send_ms"]["p99"] = 140.0  # type: ignore[index]
    res["cluster"] = {"p2_over_p1_per_cpu_s": 0.5}
    rep = bench.build_report(res)
    assert rep["targets"]["latency_ms_p99"]["met"] is False
    assert rep["targets"]["p2_over_p1_per_cpu_s"]["met"] is False
    assert "| latency p99 (ms) at half the max rate | 140.0 | 100.0 | no |" in bench.render_markdown(rep)
