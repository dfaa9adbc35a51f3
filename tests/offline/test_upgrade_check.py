"""`python -m job upgrade-check` (tools/upgrade_check.py) on this revision against itself: a job stopped with a savepoint
part way through a stream, resumed from it, gives the uninterrupted replay's records, every
one once and to the bit (MiniCluster, thread mode). Against older revisions the script needs
their git history; the state formats they wrote are checked in tests/core/test_features.py and
tests/adapters/test_operator.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.minicluster



def test_a_savepoint_resumed_gives_the_replays_records_once_and_to_the_bit(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "job", "upgrade-check", "--work", str(tmp_path / "w"), ".", "."],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    read = next(x for x in lines if "stopped with a savepoint" in x)
    m = re.fullmatch(r"\. read (\d+) lines and stopped with a savepoint; \. restored it and read the other (\d+)", read)
    assert m, read
    # The resumed run read only the rest of the stream: the source's offset was restored.
    before, after = int(m.group(1)), int(m.group(2))
    assert before >= 9_000 and after > 0 and before + after == 12_000, read
    rows = {x.split()[0]: x for x in lines if x.split() and x.split()[0] in
            ("alerts", "scores", "late", "dead_letter", "drift")}
    assert set(rows) == {"alerts", "scores", "late", "dead_letter", "drift"}
    assert all(r.endswith("bit for bit") for r in rows.values()), rows
    assert "replay 12,000  two runs 12,000" in rows["scores"]
    assert "replay      0" not in rows["alerts"]  # the stream's spikes alert
    assert lines[-1] == "ok"
