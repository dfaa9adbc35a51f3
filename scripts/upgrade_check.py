"""Upgrade check: a savepoint of one revision's job restores in another revision's job.

    .venv/bin/python scripts/upgrade_check.py [--events 12000] [--stop-at 9000] \\
        [--entities 2] [--work bench/tmp/upgrade-check] OLD_REV [NEW_REV]

Both revisions run the job (``job.pipeline.build_pipeline``, default configuration, score
records on) on a local MiniCluster, each from its own git worktree (``scripts/bench_ab.py
tree``; ``NEW_REV`` defaults to ``.``, the working tree) with that tree's own ``udfs`` and
``state`` shipped. The input is the benchmark stream (``job.bench.generate_events``): 2
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
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ab import ROOT, tree  # noqa: E402

# Runs in the revision's tree: ``mode work events stop_at entities``.
_RUN = r"""
import sys, time
from pathlib import Path
from pyflink.common.serialization import Encoder
from pyflink.common.typeinfo import Types
from pyflink.datastream import MapFunction
from pyflink.datastream.connectors.file_system import FileSink
from pyflink.java_gateway import get_gateway
from job.bench import _bench_config, _environment, generate_events, write_lines
from job.pipeline import _tagged, build_pipeline, file_source

mode, work = sys.argv[1], Path(sys.argv[2])
events, stop_at, entities = (int(x) for x in sys.argv[3:6])


class Gate(MapFunction):
    # Lets the first ``after`` lines through at full speed, then one every ``pace_s``;
    # touches ``marker`` at line ``after`` and writes how many lines it saw on close.
    def __init__(self, marker, after, pace_s):
        self.marker, self.after, self.pace_s, self.seen = marker, after, pace_s, 0

    def map(self, value):
        self.seen += 1
        if self.seen > self.after:
            time.sleep(self.pace_s)
        if self.seen == self.after:
            Path(self.marker).touch()
        return value

    def close(self):
        Path(self.marker + ".seen").write_text(str(self.seen))


inp = work / "input.jsonl"
if mode == "old":
    write_lines(inp, generate_events(events, metrics=4, entities=entities))
conf = {
    "execution.checkpointing.storage": "filesystem",
    "execution.checkpointing.dir": (work / f"checkpoints-{mode}").resolve().as_uri(),
}
if mode == "new":
    conf["execution.state-recovery.path"] = (work / "savepoint").read_text().strip()
cfg = _bench_config(["sink.emit_scores=true"])
env = _environment(cfg, ship_job=True, conf=conf)
marker = str(work / f"gate-{mode}")
gate = Gate(marker, stop_at if mode == "old" else 1 << 62, 0.05)
src = file_source(env, str(inp)).map(gate, output_type=Types.STRING()).name("gate").uid("gate")
outputs = build_pipeline(env, cfg, src)
tagged = [_tagged(stream, name) for name, stream in outputs.items()]
sink = FileSink.for_row_format(str(work / "sink"), Encoder.simple_string_encoder()).build()
tagged[0].union(*tagged[1:]).sink_to(sink).name("files").uid("files")
client = env.execute_async(f"upgrade-check-{mode}")
if mode == "old":
    deadline = time.monotonic() + 600
    while not Path(marker).exists():  # the gate's own signal, polled
        if time.monotonic() > deadline:
            raise SystemExit("the old job never reached the stop line")
        time.sleep(0.2)
    # (PyFlink 2.3's JobClient.stop_with_savepoint calls a Java method that no longer exists.)
    fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    target = (work / "savepoints").resolve().as_uri()
    path = client._j_job_client.stopWithSavepoint(False, target, fmt).get()
    (work / "savepoint").write_text(path)
else:
    client.get_job_execution_result().result()
"""

# Runs in the new revision's tree: ``work``; prints one JSON object per output.
_COMPARE = r"""
import json, sys
from collections import Counter
from pathlib import Path
from job.config import load_config
from udfs.core.events import ParseConfig, parse_line
from udfs.core.replay import replay
from udfs.detect import score_row

work = Path(sys.argv[1])
cfg = load_config(None, ["sink.emit_scores=true"])
lines = (work / "input.jsonl").read_text().splitlines()
names = {"alert": "alerts", "score": "scores"}
want = {n: Counter() for n in ("alerts", "scores", "late", "dead_letter", "drift")}
for kind, rec in replay((parse_line(x, ParseConfig()) for x in lines), cfg.detector):
    row = score_row(rec, cfg.sink.emit_features) if kind == "score" else rec
    want[names.get(kind, kind)][json.dumps(row, sort_keys=True)] += 1
got = {n: Counter() for n in want}
for f in sorted((work / "sink").rglob("*")):
    if f.is_file() and not f.name.startswith("."):
        for line in f.read_text().splitlines():
            name, _, payload = line.partition("\t")
            got[name][payload] += 1


def rounded(text):
    def r(o):
        if isinstance(o, float):
            return float(f"{o:.9g}")
        if isinstance(o, dict):
            return {k: r(v) for k, v in o.items()}
        if isinstance(o, list):
            return [r(v) for v in o]
        return o
    return json.dumps(r(json.loads(text)), sort_keys=True)


for name in want:
    w, g = Counter(), Counter()
    for text, n in want[name].items():
        w[rounded(text)] += n
    for text, n in got[name].items():
        g[rounded(text)] += n
    print(json.dumps({
        "output": name, "replay": sum(want[name].values()), "runs": sum(got[name].values()),
        "bit_for_bit": got[name] == want[name], "missing": sum((w - g).values()),
        "extra": sum((g - w).values()),
    }))
"""


def _child_env(path: Path) -> dict[str, str]:
    """This environment for a run in ``path``'s tree, without what a PyFlink worker sets:
    run from a process that ran Flink jobs (the test suite), ``PYFLINK_GATEWAY_DISABLED``
    would stop the child from starting its own gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_GATEWAY")}
    env["PYTHONPATH"] = str(path)
    return env


def _python(path: Path, code: str, *args: str) -> str:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code, *args],
        cwd=path, env=_child_env(path), capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"{path.name}: exit status {out.returncode}")
    return out.stdout


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=12_000)
    ap.add_argument("--stop-at", type=int, default=9_000)
    ap.add_argument("--entities", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "tmp" / "upgrade-check")
    ap.add_argument("old")
    ap.add_argument("new", nargs="?", default=".")
    a = ap.parse_args(argv)
    if not 0 < a.stop_at < a.events:
        ap.error("--stop-at must lie inside the stream")
    work = a.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    counts = (str(a.events), str(a.stop_at), str(a.entities))
    _python(tree(a.old), _RUN, "old", str(work), *counts)
    _python(tree(a.new), _RUN, "new", str(work), *counts)
    seen_new = int((work / "gate-new.seen").read_text())
    print(f"{a.old} read {a.events - seen_new} lines and stopped with a savepoint; "
          f"{a.new} restored it and read the other {seen_new}")
    bad = seen_new >= a.events  # the new run read everything again: nothing was restored
    for line in _python(tree(a.new), _COMPARE, str(work)).splitlines():
        row = json.loads(line)
        differs = row["missing"] > 0 or row["extra"] > 0
        bad |= differs or (row["output"] == "scores" and row["replay"] == 0)
        same = "bit for bit" if row["bit_for_bit"] else "equal up to 9 significant digits"
        print(f"{row['output']:12s} replay {row['replay']:6,d}  two runs {row['runs']:6,d}  "
              f"missing {row['missing']}  extra {row['extra']}  {'DIFFERS' if differs else same}")
    print("FAILED" if bad else "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
