"""Several input partitions, read at different paces, change no output: the Kafka source
makes the watermarks per partition (job/pipeline.py ``line_watermarks``), so an event is
never behind the watermark because another partition was read ahead of it.

The whole input is in the topic before the job starts, so the source reads a backlog: each
fetch hands over hundreds of one partition's records before the other's. The job runs
bounded on a local MiniCluster (``python -m job run``), and every output equals the replay
of the input in one go.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from job.config import load_config
from tests.configs import FAST
from tests.e2e.kafka_helpers import create_topics, unique
from tests.e2e.test_job_kafka import assert_outputs_equal, produce
from tests.minicluster.test_flink_job import _replay_outputs, _stream

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
PARTITIONS = 2
FILES = {"alerts": "alerts.jsonl", "scores": "scores.jsonl", "late": "late.jsonl",
         "dead_letter": "dead_letter.jsonl", "drift": "drift.jsonl"}


def partition_of(line: str, partitions: int) -> int:
    """Entity ``eN`` to partition ``N % partitions``; a line naming no such entity to 0."""
    try:
        entity = json.loads(line).get("entity")
    except (ValueError, AttributeError):
        return 0
    if isinstance(entity, str) and entity[1:].isdigit():
        return int(entity[1:]) % partitions
    return 0


def test_partitions_read_at_different_paces_give_the_replays_outputs(kafka_broker, tmp_path):
    bs = kafka_broker.bootstrap
    lines = _stream(seed=9, entities=4, minutes=600)
    topic = unique("parts")
    create_topics(bs, topic, partitions=PARTITIONS)
    produce(bs, topic, lines, lambda line: partition_of(line, PARTITIONS))
    sets = [*FAST, "sink.emit_scores=true", "source.type=kafka", f"kafka.bootstrap_servers={bs}",
            f"kafka.events_topic={topic}", f"kafka.group_id={topic}-job", "kafka.bounded=true",
            "kafka.starting_offsets=earliest", f"sink.dir={tmp_path / 'out'}"]
    args = [sys.executable, "-m", "job", "run"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    expected = _replay_outputs(lines, load_config(None, sets))
    assert expected["late"] and sum(expected["late"].values()) < 50  # stragglers only
    assert_outputs_equal(
        {name: (tmp_path / "out" / file).read_text().splitlines() for name, file in FILES.items()},
        expected,
    )
