"""The line batcher (``udfs/jvm/flinkanomaly/LineBatcher.java``, job/pipeline.py
``batch_lines``) on a MiniCluster: it groups an entity's lines for the detect operator and
must hand over every line once, each entity's lines in order, and never a line behind a
watermark that came after it (the detect operator must see lines and watermarks in the order
it would without it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction

from job.config import load_config
from job.jvm import operators_jar
from job.pipeline import (
    batch_lines,
    collection_source,
    create_environment,
    front,
    key_by_entity,
    with_event_time,
)
from tests import ROOT
from udfs.tags import BATCH_TYPE

pytestmark = pytest.mark.minicluster

T0 = 1_767_225_600_000
BOUND = 5_000


class RecordGroups(KeyedProcessFunction):  # type: ignore[misc]
    """Each group as it arrives, with the watermark the operator had then."""

    def process_element(self, value: Any, ctx: Any) -> Iterator[str]:
        entity, lines = value
        yield json.dumps([entity, list(lines), ctx.timer_service().current_watermark()])


def test_the_batcher_is_built_by_make_native() -> None:
    # `make test` builds it (scripts/build_jvm.py); without it the job runs one call per line.
    assert operators_jar() is not None


def test_the_network_buffer_timeout_is_the_job_setting() -> None:
    # What bounds a record's wait in a network buffer (the latency target rests on it).
    default = load_config(None, [])
    assert create_environment(default).get_buffer_timeout() == default.execution.buffer_timeout_ms
    assert default.execution.buffer_timeout_ms < 100  # Flink's own default, too slow here
    cfg = load_config(None, ["execution.buffer_timeout_ms=-1"])
    assert create_environment(cfg).get_buffer_timeout() == -1
    with pytest.raises(ValueError, match="buffer_timeout_ms"):
        load_config(None, ["execution.buffer_timeout_ms=-2"])


def test_groups_keep_every_line_once_in_order_and_never_cross_a_watermark() -> None:
    n, max_lines = 6_000, 50
    entities = ["a", "b", "c", "d"]
    # One second apart, in order: any watermark made after line i was read is above the one
    # line i may be seen with.
    lines = [
        json.dumps({"entity": entities[(i * 7) % 4 if i % 5 else 0], "ts": T0 + i * 1000,
                    "metrics": {"x": i}})
        for i in range(n)
    ] + ["not json"]
    cfg = load_config(None, ["execution.parallelism=1"])
    env = create_environment(cfg)
    env.add_python_file(str(ROOT / "tests"))
    env.get_config().set_auto_watermark_interval(5)
    timed = with_event_time(env, front(env, collection_source(env, lines), cfg.parse), BOUND, cfg.execution)
    # A flush timer that never fires in this run: groups leave at watermarks, at max_lines
    # and at the end of the input only.
    batched = batch_lines(env, timed, max_lines, 600_000)
    assert batched is not None
    out = key_by_entity(batched, BATCH_TYPE).process(RecordGroups(), output_type=Types.STRING())
    with out.execute_and_collect("batcher") as results:
        groups = [json.loads(r) for r in results]

    per_entity: dict[str, list[str]] = {}
    for entity, group, _ in groups:
        per_entity.setdefault(entity, []).extend(group)
    expected: dict[str, list[str]] = {}
    for line in lines:
        key = json.loads(line)["entity"] if line.startswith("{") else ""
        expected.setdefault(key, []).append(line)
    assert per_entity == expected  # every line once, each entity's in order
    sizes = [len(g) for _, g, _ in groups]
    assert max(sizes) <= max_lines
    assert sum(1 for s in sizes if s > 1) > len(groups) // 2  # they do group
    index = {line: i for i, line in enumerate(lines)}
    watermarks = 0
    for _, group, wm in groups:
        if wm > -(2**63):
            watermarks += 1
        for line in group:
            if line != "not json":
                # the newest timestamp read before this line, less the bound
                assert wm <= T0 + (index[line] - 1) * 1000 - BOUND - 1, (line, wm)
    assert watermarks > 10  # watermarks did pass while lines were grouped
