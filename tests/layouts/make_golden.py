"""Write a golden state file from a checkout of an earlier revision (run from its root):

    git worktree add /tmp/rev <rev> && cd /tmp/rev
    PYTHONPATH=. python /path/to/tests/layouts/make_golden.py /path/to/tests/layouts/golden/<name>

The detector of entity ``srv-1`` of the demo stream, fed its first 2,000 events and one
verdict still waiting for its time, is encoded with that revision's codec (``<name>.bin``);
the records it gives for the rest of the stream, score records without their raw scores and
features, floats as hex, are ``<name>.records.jsonl.gz``: what a restore of that state in a
later release must give, under that revision's default configuration
(tests/layouts/test_upgrade.py).
"""

import gzip
import json
import sys
from pathlib import Path

from job.demo_data import write_demo
from state.codec import encode
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict

CUT = 2_000


def plain(v):
    if isinstance(v, float):
        return "nan" if v != v else v.hex()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def records(outputs):
    for kind, rec in outputs:
        if kind == "score":
            rec = {k: v for k, v in rec.items() if k not in ("features", "stats_raw", "hst_raw", "raw")}
        yield json.dumps([kind, plain(rec)], sort_keys=True)


def main(out: str) -> None:
    demo = Path(out + ".input.jsonl")
    write_demo(demo)
    events = [parse_event_or_verdict(x, ParseConfig()) for x in demo.read_text().splitlines()]
    demo.unlink()
    events = [e for e in events if getattr(e, "entity", None) == "srv-1" and hasattr(e, "metrics")]
    det = EntityDetector("srv-1", DetectorConfig())
    for ev in events[:CUT]:
        det.on_event(ev)
    det.on_verdict(Verdict("0123456789abcdef", "srv-1", "false_positive", "", events[CUT + 50].ts_ms))
    Path(out + ".bin").write_bytes(encode(det.snapshot()))
    rest = [o for ev in events[CUT:] for o in det.on_event(ev)] + det.flush()
    with gzip.open(out + ".records.jsonl.gz", "wt") as fh:
        fh.write("\n".join(records(rest)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
