"""Upgrade check: a savepoint of one revision's job restores in another revision's job.

    .venv/bin/python -m job upgrade-check [--events 12000] [--stop-at 9000] \\
        [--entities 2] [--work bench/tmp/upgrade-check] OLD_REV [NEW_REV]

Both revisions run the job (``job.pipeline.build_pipeline``, default configuration, score
records on) on a local MiniCluster, each from its own git worktree (``tools/revisions.py``; ``NEW_REV`` defaults to ``.``, the working tree) with that tree's own ``udfs`` and
``state`` shipped. The input is the benchmark stream (``tools.bench.generate_events``): 2
entities by default, so the longest window fills and the injected spikes alert on both sides
of the stop.

1. ``OLD_REV`` reads the first ``--stop-at`` lines at full speed, then one line every 50 ms,
   and is stopped with a savepoint (``stopWithSavepoint``, not drained: no end-of-input
   watermark, so every entity is still in keyed state).
2. ``NEW_REV`` starts from that savepoint and reads the rest of the file (the source resumes
   from its offset).

Both write to one exactly-once file sink (one uid, so the second run finishes the first's
in-progress part file). The outputs of the two runs together must be ``NEW_REV``'s replay of
the whole stream (``udfs.core.replay``, no Flink, no restore): every record once, nothing
missing, nothing extra. Equality is checked to the bit and up to 9 significant digits; a
state format change that alters the arithmetic (as the windows' two stacks did) is equal
only up to rounding. Exit status 1 when a record is missing or extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tools.revisions import ROOT, run_in, tree


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--events", type=int, default=12_000, help="stream length (default: %(default)s)")
    ap.add_argument("--stop-at", type=int, default=9_000, help="savepoint after this many lines")
    ap.add_argument("--entities", type=int, default=2, help="entities (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "tmp" / "upgrade-check")
    ap.add_argument("old", help="the revision that writes the savepoint")
    ap.add_argument("new", nargs="?", default=".", help="the revision that restores it (default: .)")


def run(a: argparse.Namespace) -> int:
    if not 0 < a.stop_at < a.events:
        raise ValueError("--stop-at must lie inside the stream")
    work = a.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    counts = (str(a.events), str(a.stop_at), str(a.entities))
    run_in(tree(a.old), "upgrade_run", "old", str(work), *counts)
    run_in(tree(a.new), "upgrade_run", "new", str(work), *counts)
    seen_new = int((work / "gate-new.seen").read_text())
    print(f"{a.old} read {a.events - seen_new} lines and stopped with a savepoint; "
          f"{a.new} restored it and read the other {seen_new}")
    bad = seen_new >= a.events  # the new run read everything again: nothing was restored
    for line in run_in(tree(a.new), "upgrade_compare", str(work)).splitlines():
        row = json.loads(line)
        differs = row["missing"] > 0 or row["extra"] > 0
        bad |= differs or (row["output"] == "scores" and row["replay"] == 0)
        same = "bit for bit" if row["bit_for_bit"] else "equal up to 9 significant digits"
        print(f"{row['output']:12s} replay {row['replay']:6,d}  two runs {row['runs']:6,d}  "
              f"missing {row['missing']}  extra {row['extra']}  {'DIFFERS' if differs else same}")
    print("FAILED" if bad else "ok")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.upgrade_check``: the same as ``python -m job upgrade-check``."""
    from job.cli import main as cli_main

    return cli_main(["upgrade-check", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
