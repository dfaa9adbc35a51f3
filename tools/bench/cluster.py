"""The standalone cluster at parallelism 1 and 2 (full run)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script by `flink run -py`: the project on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import HEADLINE_METRICS
from tools.bench.flink import CpuMeter, bench_config, discard
from tools.bench.plan import Plan
from tools.bench.standalone import StandaloneCluster, cluster_pids, sample_until, steady_rate
from tools.bench.stats import ratio
from tools.bench.streams import generate_events, write_lines

# -- standalone cluster (full run) -------------------------------------------------------------


def _cluster_main(argv: Sequence[str]) -> int:
    """Inside ``flink run -py tools/bench/cluster.py -- cluster-job --input F --parallelism P``."""
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--input", required=True)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--name", required=True)
    a = p.parse_args(argv)
    from job.pipeline import build_pipeline, create_environment, file_source

    cfg = bench_config([f"execution.parallelism={a.parallelism}"])
    env = create_environment(cfg)
    for out_name, stream in build_pipeline(env, cfg, file_source(env, a.input)).items():
        discard(stream, out_name)
    env.execute(a.name)
    return 0


#: Entity layouts of the scale-out measurement: every entity alike, and Zipf-skewed (s = 1.1:
#: the busiest of 64 entities has about a quarter of the events).
SHAPES = {"uniform": 0.0, "zipf": 1.1}
#: Seconds between samples of the event counter and the cluster's CPU time.
SAMPLE_S = 0.2


def run_cluster(plan: Plan, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Parallelism 1 and 2 on a standalone cluster of two one-slot TaskManagers.

    Each job's rate is its steady state (:mod:`tools.bench.standalone`): events scored per
    second of CPU time of every process of the cluster (the JobManager, both TaskManagers,
    and anything they start, Python included), between 20 % and 95 % of its events, so the
    two parallelisms compare on equal terms on a machine whose two cores both run the
    cluster, without the start of a job (deployment, the Python workers' imports) in the
    figure. One repetition is parallelism 1 then 2; its ratio is p2 / p1 of the events per
    CPU-second. The figure is the median of the repetitions' ratios, with their spread.
    """
    n = plan.cluster_events
    entities = 64
    files: dict[str, Path] = {}
    for shape, zipf_s in SHAPES.items():
        lines = generate_events(n, metrics=HEADLINE_METRICS, entities=entities, zipf_s=zipf_s)
        files[shape] = write_lines(work / f"cluster-{shape}-{n}.jsonl", lines)
    ceiling = two_process_ceiling(plan.ceiling_events, plan.cluster_repeats)
    log(f"  two processes at once: {ceiling['ratio']:.2f} of one alone per CPU-second")
    log("  starting a standalone cluster (2 TaskManagers) ...")
    c = StandaloneCluster(work, taskmanagers=2)
    seq = iter(range(1_000_000))

    def run(shape: str, parallelism: int) -> dict[str, Any]:
        name = f"bench-cluster-{shape}-p{parallelism}-{next(seq)}"
        args = ["-p", str(parallelism), "-py", "tools/bench/cluster.py", "-pyfs", "udfs,state"]
        args += ["cluster-job", "--input", str(files[shape]), "--parallelism", str(parallelism), "--name", name]
        with CpuMeter(cluster_pids(c.build)) as meter:
            jid = c.submit(name, args)
            samples = sample_until(
                lambda k: k >= 0.95 * n or c.state(jid) in ("FINISHED", "FAILED"),
                c.scraped_events, meter, SAMPLE_S, 1800,
            )
        c.wait_status(jid, "FINISHED", 600)
        return steady_rate(samples, n)

    shapes: dict[str, Any] = {}
    try:
        for parallelism in (2, 1):  # warm both TaskManagers (JIT, Python imports); not counted
            run("uniform", parallelism)
        for shape in SHAPES:
            reps = []
            for rep in range(plan.cluster_repeats):
                row: dict[str, Any] = {f"p{p}": run(shape, p) for p in (1, 2)}
                row["p2_over_p1_per_cpu_s"] = ratio(row["p2"]["eps_per_cpu_s"], row["p1"]["eps_per_cpu_s"])
                row["p2_over_p1_wall"] = ratio(row["p2"]["eps"], row["p1"]["eps"])
                reps.append(row)
                log(
                    f"    {shape} rep {rep + 1}: p1 {row['p1']['eps_per_cpu_s'] or 0:,.0f}, "
                    f"p2 {row['p2']['eps_per_cpu_s'] or 0:,.0f} events/CPU-s; "
                    f"p2/p1 {row['p2_over_p1_per_cpu_s'] or 0:.2f} per CPU-s, "
                    f"{row['p2_over_p1_wall'] or 0:.2f} wall"
                )
            shapes[shape] = _summary(reps)
    finally:
        c.stop()
    p2_p1 = shapes["uniform"]["p2_over_p1_per_cpu_s"]
    return {"entities": entities, "metrics": HEADLINE_METRICS, "events": n,
            "zipf_s": SHAPES["zipf"], "shapes": shapes, "two_process_ceiling": ceiling,
            "p2_over_p1_per_cpu_s": p2_p1,
            "p2_over_p1_vs_ceiling": ratio(p2_p1, ceiling["ratio"])}


def _ceiling_main(argv: Sequence[str]) -> int:
    """``python tools/bench/cluster.py ceiling --events N``: the operator's loop (core and
    codec, no Flink) over N events; prints ``{"events", "cpu_s"}`` of its last 90 %."""
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--events", type=int, required=True)
    a = p.parse_args(argv)
    import json

    from job.config import load_config
    from tools.bench.loops import plain_loop

    lines = generate_events(a.events, metrics=HEADLINE_METRICS, entities=64)
    n1 = a.events // 10
    (_, _, c1), (_, _, c2) = plain_loop(lines, load_config(None, []).detector, codec=True, marks=(n1, a.events))
    print(json.dumps({"events": a.events - n1, "cpu_s": c2 - c1}))
    return 0


def two_process_ceiling(events: int, repeats: int) -> dict[str, Any]:
    """What this machine gives two busy processes at once: the operator's loop per CPU-second
    in two processes running together, over the same loop alone (the median of
    ``repeats`` alone/together pairs). Two cores that share a physical core, or a host
    that is busy, give less than 1: it bounds what parallelism 2 can reach against 1 per
    CPU-second whatever the job does."""
    import json

    def run(n_proc: int) -> list[float]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "ceiling", "--events", str(events)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n_proc)]
        rates = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            r = json.loads(out.strip().splitlines()[-1])
            rates.append(r["events"] / max(r["cpu_s"], 1e-9))
        return rates

    ratios, alone_rates, pair_rates = [], [], []
    for _ in range(repeats):
        [alone] = run(1)
        pair = run(2)
        alone_rates.append(alone)
        pair_rates.append(statistics.mean(pair))
        ratios.append(statistics.mean(pair) / alone)
    return {"events": events, "alone_eps_per_cpu_s": statistics.median(alone_rates),
            "together_eps_per_cpu_s": statistics.median(pair_rates), "ratio": statistics.median(ratios),
            "ratios": ratios}


def _summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the repetitions' figures, and the spread of the ratio (max / min - 1)."""
    def med(xs: list[float | None]) -> float | None:
        vals = sorted(x for x in xs if x is not None)
        return statistics.median(vals) if vals else None

    ratios = [r["p2_over_p1_per_cpu_s"] for r in reps if r["p2_over_p1_per_cpu_s"]]
    return {
        "p1_eps_per_cpu_s": med([r["p1"]["eps_per_cpu_s"] for r in reps]),
        "p2_eps_per_cpu_s": med([r["p2"]["eps_per_cpu_s"] for r in reps]),
        "p1_eps": med([r["p1"]["eps"] for r in reps]),
        "p2_eps": med([r["p2"]["eps"] for r in reps]),
        "p2_over_p1_per_cpu_s": med(ratios),
        "p2_over_p1_wall": med([r["p2_over_p1_wall"] for r in reps]),
        "ratio_spread": (max(ratios) / min(ratios) - 1.0) if len(ratios) > 1 else None,
        "reps": reps,
    }


if __name__ == "__main__":  # `flink run -py tools/bench/cluster.py -- cluster-job ...`, or `ceiling`
    sys.exit((_ceiling_main if sys.argv[1:2] == ["ceiling"] else _cluster_main)(sys.argv[1:]))
