"""Window summaries: the sketch's error bound, merging, and Flink's windows against brute force."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from job.config import load_config
from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source
from udfs.core.summaries import RelativeQuantileSketch, SummaryAccumulator


def _lower_quantile(values: list[float], q: float) -> float:
    return sorted(values)[int(math.floor(q * (len(values) - 1)))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sketch_quantiles_are_within_the_relative_error_of_the_true_ones(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(3, 2) * rng.choice([-1, 1, 1, 1]) for _ in range(5000)] + [0.0] * 50
    s = RelativeQuantileSketch(alpha=0.01)
    for v in values:
        s.update(v)
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99):
        true = _lower_quantile(values, q)
        assert abs(s.quantile(q) - true) <= 0.01 * abs(true) + 1e-12, q


def test_merged_sketches_equal_one_sketch_of_all_values() -> None:
    rng = random.Random(4)
    a, b, both = RelativeQuantileSketch(), RelativeQuantileSketch(), RelativeQuantileSketch()
    for i in range(2000):
        v = rng.gauss(0, 100)
        (a if i % 3 else b).update(v)
        both.update(v)
    a.merge(b)
    assert a.to_plain() == both.to_plain()


def test_accumulator_reports_exact_count_mean_min_max() -> None:
    acc, other = SummaryAccumulator(), SummaryAccumulator()
    acc.add({"cpu": 1.0, "lat": 10.0})
    acc.add({"cpu": 3.0})
    other.add({"cpu": 8.0})
    acc.merge(other)
    r = acc.result()
    assert r["cpu"]["count"] == 3 and r["cpu"]["mean"] == 4.0
    assert (r["cpu"]["min"], r["cpu"]["max"]) == (1.0, 8.0)
    assert r["lat"] == {"count": 1, "mean": 10.0, "min": 10.0, "max": 10.0, "p95": pytest.approx(10.0, rel=0.01)}


@pytest.mark.minicluster
def test_flink_sliding_window_summaries_match_brute_force(tmp_path: Path) -> None:
    t0 = 1_767_225_600_000
    rng = random.Random(8)
    events = []
    for i in range(1200):
        for e in ("a", "b"):
            events.append({"entity": e, "ts": t0 + i * 5_000, "metrics": {"v": round(rng.gauss(50, 10), 3)}})
    src = tmp_path / "in.jsonl"
    # Verdicts among the events (the first before any watermark) are not window input.
    verdict = {"alert_id": "x", "entity": "a", "verdict": "true_positive", "ts": t0 + 60_000}
    lines = [json.dumps(verdict)] + [json.dumps(e) for e in events]
    lines.insert(1000, json.dumps({**verdict, "entity": "b"}))
    src.write_text("\n".join(lines) + "\n")
    cfg = load_config(None, ["summaries.enabled=true", "summaries.size_ms=300000", "summaries.slide_ms=60000"])
    env = create_environment(cfg)
    collect_to_files(build_pipeline(env, cfg, file_source(env, str(src))), tmp_path / "out", "summaries")
    got = [json.loads(line) for line in (tmp_path / "out" / "summaries.jsonl").read_text().splitlines()]
    assert not (tmp_path / "out" / "late.jsonl").read_text()
    # Every window of every entity that holds events, once: 100 minutes / 1-minute slide + 4.
    assert len(got) == 2 * (100 + 4)
    for s in got:
        vals = [
            ev["metrics"]["v"]
            for ev in events
            if ev["entity"] == s["entity"] and s["window_start_ms"] <= ev["ts"] < s["window_end_ms"]
        ]
        m = s["metrics"]["v"]
        assert m["count"] == len(vals)
        assert m["mean"] == pytest.approx(float(np.mean(vals)), rel=1e-12)
        assert (m["min"], m["max"]) == (min(vals), max(vals))
        true_p95 = _lower_quantile(vals, 0.95)
        assert abs(m["p95"] - true_p95) <= 0.01 * abs(true_p95)
