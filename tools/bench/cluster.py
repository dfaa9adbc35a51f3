"""The standalone cluster at parallelism 1 and 2 (full run)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script by `flink run -py`: the project on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import json
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import HEADLINE_METRICS, PROJECT_ROOT
from tools.bench.flink import CpuMeter, bench_config, discard
from tools.bench.plan import Plan
from tools.bench.stats import marginal_rate, ratio
from tools.bench.streams import generate_events, write_lines

# -- standalone cluster (full run) -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rest(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


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


def _cluster_pids(build: Path) -> list[int]:
    """The JobManager's and TaskManagers' pids (cluster.sh's pid files): the processes whose
    CPU time, with their descendants', is the cluster's."""
    pids = []
    for f in sorted((build / "flink-pid").glob("*.pid")):
        pids += [int(x) for x in f.read_text().split() if x.strip().isdigit()]
    live = [p for p in pids if Path(f"/proc/{p}").exists()]
    if not live:
        raise RuntimeError(f"no live cluster process in {build / 'flink-pid'}")
    return live


#: Entity layouts of the scale-out measurement: every entity alike, and Zipf-skewed (s = 1.1:
#: the busiest of 64 entities has about a quarter of the events).
SHAPES = {"uniform": 0.0, "zipf": 1.1}


def run_cluster(plan: Plan, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Parallelism 1 and 2 on a standalone cluster of two one-slot TaskManagers.

    Each job's CPU time is that of every process of the cluster (the JobManager, both
    TaskManagers, and anything they start, Python included) over the submit, so events per
    CPU-second compare the two parallelisms on equal terms on a machine whose two cores both
    run the cluster. One repetition is N1 and N2 at parallelism 1 and 2 back to back, and its
    ratio is p2 / p1 of the marginal events per CPU-second; the figure is the median of the
    repetitions' ratios, with their spread.
    """
    script = str(PROJECT_ROOT / "scripts" / "cluster.sh")
    build = work / "cluster"
    rest_port, rpc_port = _free_port(), _free_port()
    env = dict(os.environ, VENV=sys.prefix)
    entities = 64
    n1, n2 = plan.cluster_sizes
    files: dict[tuple[str, int], Path] = {}
    for shape, zipf_s in SHAPES.items():
        lines = generate_events(n2, metrics=HEADLINE_METRICS, entities=entities, zipf_s=zipf_s)
        for n in (n1, n2):
            files[shape, n] = write_lines(work / f"cluster-{shape}-{n}.jsonl", lines[:n])
    start = [script, "start", "--taskmanagers", "2", "--build-dir", str(build)]
    start += ["--rest-port", str(rest_port), "--rpc-port", str(rpc_port)]
    log(f"  starting a standalone cluster (2 TaskManagers, REST port {rest_port}) ...")
    subprocess.run(start, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=300)
    base = f"http://127.0.0.1:{rest_port}"
    seq = iter(range(1_000_000))

    def submit(shape: str, n: int, parallelism: int) -> dict[str, Any]:
        name = f"bench-cluster-{shape}-p{parallelism}-{n}-{next(seq)}"
        cmd = [script, "submit", "--build-dir", str(build), "--"]
        cmd += ["-p", str(parallelism), "-py", "tools/bench/cluster.py", "-pyfs", "udfs,state"]
        cmd += ["cluster-job", "--input", str(files[shape, n]), "--parallelism"]
        cmd += [str(parallelism), "--name", name]
        w0 = time.perf_counter()
        with CpuMeter(_cluster_pids(build)) as cpu:
            subprocess.run(cmd, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=1800)
        wall = time.perf_counter() - w0
        job = next(j for j in _rest(f"{base}/jobs/overview")["jobs"] if j["name"] == name)
        return {"n": n, "wall_s": wall, "job_s": job["duration"] / 1000.0, "cpu_s": cpu.seconds}

    shapes: dict[str, Any] = {}
    try:
        submit("uniform", n1, 2)  # warms both TaskManagers (JIT, Python imports); not counted
        for shape in SHAPES:
            reps = []
            for rep in range(plan.cluster_repeats):
                row: dict[str, Any] = {}
                for parallelism in (1, 2):
                    a, b = submit(shape, n1, parallelism), submit(shape, n2, parallelism)
                    row[f"p{parallelism}"] = {
                        "eps_per_cpu_s": marginal_rate(n1, a["cpu_s"], n2, b["cpu_s"]),
                        "eps": marginal_rate(n1, a["job_s"], n2, b["job_s"]),
                        "runs": [a, b],
                    }
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
        subprocess.run(
            [script, "stop", "--build-dir", str(build)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=120,
        )
    return {"entities": entities, "metrics": HEADLINE_METRICS, "n1": n1, "n2": n2,
            "zipf_s": SHAPES["zipf"], "shapes": shapes,
            "p2_over_p1_per_cpu_s": shapes["uniform"]["p2_over_p1_per_cpu_s"]}


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


if __name__ == "__main__":  # `flink run -py tools/bench/cluster.py -- cluster-job ...`
    sys.exit(_cluster_main(sys.argv[1:]))
