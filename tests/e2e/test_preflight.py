"""The client's pre-flight check against a real broker: a missing input topic is one line
before anything is submitted, an existing one passes (job/kafka_io.py::preflight)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from job.kafka_io import KafkaConfig, preflight
from tests.e2e.kafka_helpers import create_topics, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_input_topic_is_one_line_naming_it(kafka_broker, tmp_path):
    topic = unique("never-created")
    proc = subprocess.run(
        [sys.executable, "-m", "job", "run", "--out", str(tmp_path),
         "--set", "source.type=kafka", "--set", f"kafka.bootstrap_servers={kafka_broker.bootstrap}",
         "--set", f"kafka.events_topic={topic}"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Exception" not in output and "at org.apache" not in output, output
    assert proc.stderr.splitlines()[-1] == (
        f"error: the input topic {topic} does not exist on {kafka_broker.bootstrap}:"
        " create it, or fix kafka.events_topic"
    )


def test_an_existing_input_topic_passes(kafka_broker):
    topic = unique("events")
    create_topics(kafka_broker.bootstrap, topic)
    preflight(KafkaConfig(bootstrap_servers=kafka_broker.bootstrap, events_topic=topic),
              events_topic=True)
