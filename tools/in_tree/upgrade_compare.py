"""In the new revision's tree: the two runs' records against that revision's replay of the
whole stream; prints one JSON object per output (``tools/upgrade_check.py``).

    upgrade_compare.py WORK
"""

import json
import sys
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
