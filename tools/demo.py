"""``python -m job demo``: the bundled demo stream through the Flink job on a local
MiniCluster; prints what it found and writes an HTML report of it (``make demo``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from job.commands.run import run_job, summary
from job.config import JobConfig
from tools.report import build_report

__all__ = ["add_arguments", "run"]

USES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")


def overrides(args: argparse.Namespace) -> list[str]:
    return ["source.type=demo", f"sink.dir={args.out}", "sink.emit_scores=true"]


def run(args: argparse.Namespace, cfg: JobConfig) -> int:
    print(
        f"demo: writing a 3-day stream of 5 entities to {args.out}/input.jsonl and running "
        "the job on a local MiniCluster ..."
    )
    t0 = time.monotonic()
    counts = run_job(cfg, "anomaly-detection-demo")
    print(summary(counts, Path(cfg.sink.dir), time.monotonic() - t0))
    out = Path(cfg.sink.dir)
    res = build_report(cfg.sink.dir, out / "report", out / "input.jsonl")
    print(f"report           {res['index']}")
    return 0
