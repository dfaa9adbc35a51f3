"""``sink.type=file`` on the standalone cluster: Flink's ``FileSink`` on the TaskManager writes
each output as part files committed on checkpoints (``flink run -py job/main.py`` defaults to
``sink.writer=flink``), nothing goes through the client, and what is committed equals the
replay oracle's outputs."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections import Counter

import pytest

from job.config import load_config
from tests.configs import FAST
from tests.e2e.kafka_helpers import create_topics, unique
from tests.e2e.test_job_kafka import (
    LINES,
    MAIN,
    PYFS,
    ROOT,
    PacedProducer,
    cancel,
    checkpoints,
    kill_taskmanager,
    late_identity,
    oracle,
    produce,
    rest,
    submit,
    wait_until,
)
from tests.minicluster.test_flink_job import _replay_outputs, _stream

pytestmark = pytest.mark.e2e

OUTPUTS = ("alerts", "scores", "late", "dead_letter", "drift")


def committed(out: pathlib.Path) -> tuple[dict[str, Counter[str]], list[str]]:
    """Lines of the visible part files per output, and the hidden (in-progress) files."""
    got: dict[str, Counter[str]] = {}
    hidden = []
    for name in OUTPUTS:
        lines: Counter[str] = Counter()
        for f in sorted((out / name).glob("*")) if (out / name).is_dir() else []:
            if f.name.startswith("."):
                hidden.append(f.name)
            else:
                assert f.name.startswith(f"{name}-") and f.name.endswith(".jsonl"), f.name
                lines.update(f.read_text().splitlines())
        got[name] = lines
    return got, hidden


def test_file_sink_on_the_cluster_commits_what_the_replay_finds(flink_cluster, e2e_build_dir, tmp_path):
    lines = _stream(seed=5, entities=4, minutes=300)
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = e2e_build_dir / "file-sink" / unique("run")
    sets = [*FAST, "sink.emit_scores=true", "source.type=file", f"source.path={src}",
            "sink.type=file", f"sink.dir={out}", "execution.checkpoint_interval_ms=500"]
    expected = _replay_outputs(lines, load_config(None, sets))
    assert sum(expected["scores"].values()) > 1000 and expected["dead_letter"] and expected["late"]
    assert any('"kind": "open"' in a for a in expected["alerts"])

    wait_until("a free task slot", lambda: rest(flink_cluster, "/overview")["slots-available"] >= 1, 90)
    args = ["-py", str(MAIN), "-pyfs", PYFS]  # attached: returns when the bounded job ends
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(
        flink_cluster.script("submit", "--build-dir", str(flink_cluster.build_dir), "--", *args),
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    jobs = [j for j in rest(flink_cluster, "/jobs/overview")["jobs"] if j["name"] == "anomaly-detection"]
    assert jobs and max(jobs, key=lambda j: j["start-time"])["state"] == "FINISHED"

    got, hidden = committed(out)
    assert not hidden, f"files never committed: {hidden}"
    assert not list(out.glob("*.jsonl")), "the client wrote files: the sink is the client's"
    for name in OUTPUTS:
        missing, extra = expected[name] - got[name], got[name] - expected[name]
        assert not missing and not extra, (
            f"{name}: {sum(missing.values())} missing, {sum(extra.values())} extra")
    ids = {json.loads(a)["alert_id"] for a in got["alerts"]}
    assert ids


def test_file_sink_through_a_taskmanager_kill_commits_each_record_once(
        kafka_broker, flink_cluster, e2e_build_dir):
    """Kafka in, files out, unbounded, state in RocksDB with incremental checkpoints: the
    TaskManager is SIGKILLed mid-stream and replaced; the job restores its checkpoint and the
    committed part files hold every record of the oracle exactly once (what was written
    after the checkpoint is discarded, not kept)."""
    bs, cluster = kafka_broker.bootstrap, flink_cluster
    topic = unique("fs-events")
    create_topics(bs, topic)
    lines = LINES
    half = len(lines) // 2
    out = e2e_build_dir / "file-sink" / unique("kill")
    sets = [*FAST, "sink.emit_scores=true", "source.type=kafka", "sink.type=file",
            f"sink.dir={out}", "sink.roll_interval_ms=1000",
            "execution.checkpoint_interval_ms=1000", "execution.restart_attempts=30",
            "execution.state_backend=rocksdb",
            f"kafka.bootstrap_servers={bs}", f"kafka.events_topic={topic}",
            f"kafka.group_id={topic}-job", "kafka.starting_offsets=earliest"]
    cfg = load_config(None, sets)
    first, expected = oracle([(lines[:half], cfg)]), oracle([(lines, cfg)])
    job = ""
    paced = None

    def reached(want: dict[str, Counter[str]]) -> bool:
        got, _ = committed(out)
        return all(sum(got[n].values()) >= sum(want[n].values()) for n in OUTPUTS)

    try:
        produce(bs, topic, lines[:half])
        job = submit(cluster, sets)
        wait_until("the first half committed to files", lambda: reached(first), 180)
        paced = PacedProducer(bs, topic, lines[half:], rate=400)
        paced.start()
        wait_until("part of the second half committed", lambda: sum(
            committed(out)[0]["scores"].values()) > sum(first["scores"].values()), 60)
        kill_taskmanager(cluster, job)
        paced.finish()
        wait_until("every record committed", lambda: reached(expected), 240)
        before = checkpoints(cluster, job)["counts"]["completed"]
        wait_until("two more checkpoints", lambda: checkpoints(
            cluster, job)["counts"]["completed"] > before + 1, 60)
        got, _ = committed(out)
        for name in OUTPUTS:
            want = expected[name]  # (the oracle's late records are their identities)
            have = got[name] if name != "late" else Counter(
                late_identity(v) for v in got[name].elements())
            missing, extra = want - have, have - want
            assert not missing and not extra, (
                f"{name}: {sum(missing.values())} missing, {sum(extra.values())} extra")
        cps = checkpoints(cluster, job)
        assert cps["latest"]["restored"], "the job did not restore"
        # incremental: a checkpoint uploads less than the whole state it describes
        latest = cps["latest"]["completed"]
        assert 0 < latest["checkpointed_size"] < latest["state_size"], latest
    finally:
        if paced is not None:
            paced.join(5)
        if job:
            cancel(cluster, job)
