"""Restore from a checkpoint mid-stream gives the alerts of an uninterrupted run.

The job runs with exactly-once checkpoints on a MiniCluster; a map in front of it (test-only,
injected through the pipeline's source argument) throws once, part way through the input.
Flink restarts the job from its last completed checkpoint: the file source resumes from its
checkpointed offset and every entity's detector from its keyed state. The collected outputs
(exactly-once with checkpointing) must equal the replay oracle's, which never failed.

The injector counts the records it sees in each attempt; the second attempt seeing fewer
records than the input holds proves the restart resumed from a checkpoint rather than from
the beginning.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyflink.common.typeinfo import Types
from pyflink.datastream import MapFunction, RuntimeContext

from job.config import load_config
from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source
from tests.configs import FAST
from tests.minicluster.test_flink_job import _replay_outputs, _stream

pytestmark = pytest.mark.minicluster


class FailOnce(MapFunction):  # type: ignore[misc]
    """Throws at record ``fail_at`` of the first attempt; paces records so checkpoints happen."""

    def __init__(self, marker_dir: str, fail_at: int, pace_s: float) -> None:
        self.marker_dir = marker_dir
        self.fail_at = fail_at
        self.pace_s = pace_s
        self.seen = 0
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        # (PEMJA's runtime context has no attempt number: count the opens instead.)
        self.attempt = len(list(Path(self.marker_dir).glob("open-*")))
        (Path(self.marker_dir) / f"open-{self.attempt}").touch()
        self.seen = 0

    def map(self, value: str) -> str:
        self.seen += 1
        # Pacing (not waiting for a result): the input must take longer than a few checkpoint
        # intervals to stream through, or there would be no checkpoint to restore.
        time.sleep(self.pace_s)
        failed = Path(self.marker_dir) / "failed"
        if self.seen == self.fail_at and not failed.exists():
            failed.write_text(str(self.seen))
            raise RuntimeError("injected failure")
        return value

    def close(self) -> None:
        (Path(self.marker_dir) / f"attempt-{self.attempt}").write_text(str(self.seen))


def failing_source(env: Any, src: Path, markers: Path, fail_at: int, pace_s: float) -> Any:
    """The lines of ``src`` through :class:`FailOnce`: the job fails once at ``fail_at``."""
    return (
        file_source(env, str(src))
        .map(FailOnce(str(markers), fail_at=fail_at, pace_s=pace_s), output_type=Types.STRING())
        .name("fail-once")
        .uid("fail-once")
    )


def test_restore_from_checkpoint_gives_the_uninterrupted_alerts(tmp_path: Path) -> None:
    lines = _stream(seed=9, entities=3, minutes=400)
    cfg = load_config(
        None,
        [
            *FAST,
            "execution.checkpoint_interval_ms=300",
            "execution.restart_attempts=2",
            "sink.emit_scores=true",
        ],
    )
    expected = _replay_outputs(lines, cfg)
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n")
    markers = tmp_path / "markers"
    markers.mkdir()

    env = create_environment(cfg)
    source = failing_source(env, src, markers, int(len(lines) * 0.6), 0.0015)
    outputs = build_pipeline(env, cfg, source)
    collect_to_files(outputs, tmp_path / "out", "recovery-test")

    assert (markers / "failed").exists(), "the failure was not injected"
    attempts = sorted(markers.glob("attempt-*"))
    assert attempts, "no attempt finished"
    last_attempt_records = int(attempts[-1].read_text())
    assert last_attempt_records < len(lines) * 0.6, (
        "the restart re-read the input instead of restoring a checkpoint"
    )

    got = {
        name: Counter((tmp_path / "out" / f"{name}.jsonl").read_text().splitlines())
        for name in ("alerts", "scores", "late", "dead_letter", "drift")
    }
    assert any(json.loads(a)["kind"] == "open" for a in expected["alerts"])
    for name in ("alerts", "late", "dead_letter", "scores", "drift"):
        assert got[name] == expected[name], f"{name} differ after the restore"
