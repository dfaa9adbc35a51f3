"""The standalone cluster at parallelism 1 and 2 (full run)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script by `flink run -py`: the project on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.bench.common import HEADLINE_METRICS, PROJECT_ROOT
from tools.bench.flink import bench_config, discard
from tools.bench.plan import Plan
from tools.bench.stats import fastest, marginal_rate, ratio
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


def run_cluster(plan: Plan, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Parallelism 1 and 2 on a standalone cluster of two one-slot TaskManagers."""
    script = str(PROJECT_ROOT / "scripts" / "cluster.sh")
    build = work / "cluster"
    rest_port, rpc_port = _free_port(), _free_port()
    env = dict(os.environ, VENV=sys.prefix)
    entities = 64
    n1, n2 = plan.cluster_sizes
    lines = generate_events(n2, metrics=HEADLINE_METRICS, entities=entities)
    files = {n: write_lines(work / f"cluster-{n}.jsonl", lines[:n]) for n in (n1, n2)}
    start = [script, "start", "--taskmanagers", "2", "--build-dir", str(build)]
    start += ["--rest-port", str(rest_port), "--rpc-port", str(rpc_port)]
    log(f"  starting a standalone cluster (2 TaskManagers, REST port {rest_port}) ...")
    subprocess.run(start, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=300)
    rows = []
    try:
        base = f"http://127.0.0.1:{rest_port}"
        for parallelism in (1, 2):
            runs = []
            for rep in range(plan.repeats):
                for n in (n1, n2):
                    name = f"bench-cluster-p{parallelism}-{n}-{rep}"
                    cmd = [script, "submit", "--build-dir", str(build), "--"]
                    cmd += ["-p", str(parallelism), "-py", "tools/bench/cluster.py", "-pyfs", "udfs,state"]
                    cmd += ["cluster-job", "--input", str(files[n]), "--parallelism"]
                    cmd += [str(parallelism), "--name", name]
                    w0 = time.perf_counter()
                    subprocess.run(
                        cmd, check=True, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=1800
                    )
                    wall = time.perf_counter() - w0
                    jobs = _rest(f"{base}/jobs/overview")["jobs"]
                    job = next(j for j in jobs if j["name"] == name)
                    runs.append({"n": n, "wall_s": wall, "job_s": job["duration"] / 1000.0})
                    log(f"    p={parallelism} N={n}: job {job['duration'] / 1000:.1f} s")
            jt = fastest((r["n"], r["job_s"]) for r in runs)
            wt = fastest((r["n"], r["wall_s"]) for r in runs)
            rows.append(
                {
                    "parallelism": parallelism,
                    "entities": entities,
                    "metrics": HEADLINE_METRICS,
                    "n1": n1,
                    "n2": n2,
                    "eps": marginal_rate(n1, jt[n1], n2, jt[n2]),
                    "eps_submit_wall": marginal_rate(n1, wt[n1], n2, wt[n2]),
                    "runs": runs,
                }
            )
    finally:
        subprocess.run(
            [script, "stop", "--build-dir", str(build)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=120,
        )
    p1 = rows[0]["eps"]
    p2 = rows[1]["eps"]
    return {"rows": rows, "speedup_p2_over_p1": ratio(p2, p1)}




if __name__ == "__main__":  # `flink run -py tools/bench/cluster.py -- cluster-job ...`
    sys.exit(_cluster_main(sys.argv[1:]))
