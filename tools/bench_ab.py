"""Before/after throughput of the job across git revisions, in one run on one machine.

    .venv/bin/python -m tools.bench_ab [--metrics 4] [--n1 3000] [--n2 15000] [--reps 2] \\
        REV[|override ...] REV[|override ...] ...

Each ``REV`` (a commit, a branch, or ``.`` for the working tree) is checked out into
``bench/tmp/ab-<rev>`` (a git worktree sharing this checkout's ``.venv`` and ``deps``); the
same benchmark stream (``tools.bench.generate_events``, 16 entities) runs through each tree's
own ``tools.bench.run_detect_job`` over the first ``n1`` and the first ``n2`` events, trees
taking turns, ``reps`` times; the rate is the marginal rate of the fastest times, wall and
per CPU-second (as ``python -m job bench`` measures the job), followed by each turn's own
marginal rate (how far the turns spread on a shared machine). ``|override`` appends
``--set``-style overrides to that tree's runs, e.g. ``.|execution.snapshot_every=1``.
"""

from __future__ import annotations

import argparse
import json
import sys

from tools.revisions import ROOT, run_in, tree


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=int, default=4)
    ap.add_argument("--n1", type=int, default=3000)
    ap.add_argument("--n2", type=int, default=15000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("revs", nargs="+")
    a = ap.parse_args(argv)
    work = ROOT / "bench" / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    best: dict[str, dict[tuple[int, str], float]] = {}
    turns: dict[str, list[tuple[int, str, float]]] = {}
    for _ in range(a.reps):
        for spec in a.revs:
            rev, *overrides = spec.split("|")
            path = tree(rev)
            for n in (a.n1, a.n2):
                out = run_in(
                    path, "ab_run", str(a.metrics), str(a.n2), str(n),
                    str(work / f"ab-{a.metrics}m-{n}.jsonl"), *overrides,
                )
                t = json.loads(out.strip().splitlines()[-1])
                row = best.setdefault(spec, {})
                for k in ("wall_s", "cpu_s"):
                    row[(n, k)] = min(row.get((n, k), float("inf")), t[k])
                    turns.setdefault(spec, []).append((n, k, t[k]))
    for spec, row in best.items():
        wall = (a.n2 - a.n1) / (row[(a.n2, "wall_s")] - row[(a.n1, "wall_s")])
        cpu = (a.n2 - a.n1) / (row[(a.n2, "cpu_s")] - row[(a.n1, "cpu_s")])
        # Each turn's own marginal rate too: how far the turns spread.
        per = {k: [(a.n2 - a.n1) / (t2 - t1) for t1, t2 in zip(
            [v for n, kk, v in turns[spec] if n == a.n1 and kk == k],
            [v for n, kk, v in turns[spec] if n == a.n2 and kk == k], strict=True)]
            for k in ("wall_s", "cpu_s")}
        spread = " ".join(f"{x:,.0f}" for x in per["wall_s"])
        cspread = " ".join(f"{x:,.0f}" for x in per["cpu_s"])
        print(f"{spec:50s} {wall:8,.0f} events/s wall {cpu:8,.0f} per CPU-second"
              f"   turns: wall {spread}; cpu {cspread}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
