"""Wiring only: environment, source, front (key and timestamp), watermarks, key_by, detect,
sinks.

``build_pipeline(env, cfg, source)`` returns the output streams by name; sources and sinks
are arguments so tests inject their own. Every operator is ``.name()``d and ``.uid()``d:
the uids are the contract with savepoints, never rename them.
"""

from __future__ import annotations

import json
import os
import sysconfig
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pyflink.common import Configuration, Duration, WatermarkStrategy
from pyflink.common.time import Time
from pyflink.common.typeinfo import Types
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    KeyedStream,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.datastream.window import SlidingEventTimeWindows
from pyflink.java_gateway import get_gateway

from job.config import (
    ExecutionConfig,
    JobConfig,
    artifact_bytes,
    check_river_mode,
    python_executable,
)
from job.jvm import configured_jars, operators_jar
from udfs.core.events import ParseConfig
from udfs.detect import DetectAnomalies
from udfs.detect_live import AuditControl, DetectAnomaliesLive, SplitOutputs, live_config_descriptor
from udfs.gate import GateAlerts
from udfs.summaries import SummaryAggregate, SummaryEvents, SummaryWindow, summary_late_record
from udfs.tags import (
    BATCH_TYPE,
    DEAD_LETTER_TAG,
    DRIFT_TAG,
    EVENT_TYPE,
    KEYED_BATCH_TYPE,
    KEYED_LINE_TYPE,
    LATE_TAG,
    LINE_TYPE,
    SCORES_TAG,
    TIMED_KEYED_LINE_TYPE,
    summary_late_tag,
)
from udfs.watermarks import control_watermark_strategy, watermark_strategy

__all__ = [
    "OUTPUT_FILES",
    "build_pipeline",
    "collect_to_files",
    "create_environment",
    "file_source",
    "front",
    "line_watermarks",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The packages the Python workers import (shipped with the job).
WORKER_PACKAGES = ("udfs", "state")
OUTPUT_FILES = {
    "alerts": "alerts.jsonl",
    "drift": "drift.jsonl",
    "dead_letter": "dead_letter.jsonl",
    "late": "late.jsonl",
    "scores": "scores.jsonl",
    "summaries": "summaries.jsonl",
}


def create_environment(cfg: JobConfig) -> StreamExecutionEnvironment:
    """A local (MiniCluster) or submitted environment configured for the Python workers."""
    conf = Configuration()
    exe = python_executable(cfg)
    conf.set_string("python.executable", exe)
    conf.set_string("python.client.executable", exe)
    conf.set_string("python.execution-mode", cfg.execution.mode)
    if cfg.execution.mode == "thread":
        # PEMJA's embedded interpreter needs the venv's site-packages on its path.
        conf.set_string("python.pythonpath", sysconfig.get_paths()["purelib"])
    if cfg.execution.state_backend:
        conf.set_string("state.backend.type", cfg.execution.state_backend)
        conf.set_string(
            "execution.checkpointing.incremental",
            "true" if cfg.execution.state_backend == "rocksdb" else "false",
        )
    if cfg.execution.checkpoint_interval_ms:
        # Backing off, so that the attempts outlast the ~20 s a killed TaskManager's slots
        # stay registered: restarts at a fixed 200 ms spent 30 attempts deploying to the
        # dead one within seconds and failed the job (tests/e2e/test_fault_matrix.py).
        for key, value in (
            ("type", "exponential-delay"),
            ("exponential-delay.initial-backoff", "200 ms"),
            ("exponential-delay.max-backoff", "10 s"),
            ("exponential-delay.backoff-multiplier", "2.0"),
            ("exponential-delay.reset-backoff-threshold", "60 s"),
            ("exponential-delay.attempts-before-reset-backoff", str(cfg.execution.restart_attempts)),
        ):
            conf.set_string(f"restart-strategy.{key}", value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(cfg.execution.parallelism)
    env.set_buffer_timeout(cfg.execution.buffer_timeout_ms)
    if cfg.execution.checkpoint_interval_ms:
        env.enable_checkpointing(
            cfg.execution.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE
        )
    shipped = _shipped_python_files(env)
    for pkg in WORKER_PACKAGES:
        if pkg not in shipped:  # `flink run -pyfs udfs,state` ships them already
            env.add_python_file(str(PROJECT_ROOT / pkg))
    return env


def _shipped_python_files(env: StreamExecutionEnvironment) -> set[str]:
    """Names of the files/folders in ``python.files`` (shipping one twice fails the job)."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.python.util.PythonConfigUtil.getEnvironmentConfig(
        env._j_stream_execution_environment
    )
    value = conf.getString("python.files", None) or ""
    return {Path(p.rstrip("/")).name for p in value.split(",") if p.strip()}


def file_source(
    env: StreamExecutionEnvironment, path: str, name: str = "events", watch_ms: int = 0
) -> DataStream:
    """JSON lines from a file (bounded) or, with ``watch_ms``, from a file or folder watched
    for new content (unbounded). ``name`` tells inputs apart (``events``, ``verdicts``,
    ``control``): each gets its own operator name and uid."""
    builder = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), os.path.abspath(path)
    )
    if watch_ms:
        builder = builder.monitor_continuously(Duration.of_millis(watch_ms))
    src = builder.build()
    uid = "source-file" if name == "events" else f"source-{name}-file"
    return env.from_source(src, WatermarkStrategy.no_watermarks(), f"{name}-file").uid(uid)


def collection_source(env: StreamExecutionEnvironment, lines: Iterable[str]) -> DataStream:
    """Raw lines from memory (tests)."""
    return (
        env.from_collection(list(lines), type_info=Types.STRING())
        .name("events-memory")
        .uid("source-memory")
    )


# ISO-8601 timestamps the front reads in Java: date, time to the second, an optional fraction
# and an optional offset (Z or +hh:mm). Python's parser reads more forms (udfs/core/events.py
# parse_timestamp); over the ones this matches, the two agree to the millisecond
# (tests/minicluster/test_front.py).
_ISO = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
_ISO_MS = (
    "(UNIX_TIMESTAMP(SUBSTRING(s FROM 1 FOR 10) || ' ' || SUBSTRING(s FROM 12 FOR 8),"
    " 'yyyy-MM-dd HH:mm:ss') * 1000"
    " + CASE WHEN SUBSTRING(s FROM 20 FOR 1) = '.'"
    " THEN CAST(RPAD(REGEXP_EXTRACT(s, '[.]([0-9]{1,3})', 1), 3, '0') AS BIGINT) ELSE 0 END"
    " - CASE WHEN REGEXP(s, '[+-][0-9]{2}:[0-9]{2}$') THEN"
    " (CASE WHEN SUBSTRING(s FROM CHAR_LENGTH(s) - 5 FOR 1) = '-' THEN -60000 ELSE 60000 END)"
    " * (CAST(SUBSTRING(s FROM CHAR_LENGTH(s) - 4 FOR 2) AS BIGINT) * 60"
    " + CAST(SUBSTRING(s FROM CHAR_LENGTH(s) - 1 FOR 2) AS BIGINT)) ELSE 0 END)"
)
# An event's timestamp as the front reads it: an integer (or a string of digits), or the ISO
# form above; NULL otherwise.
_EVENT_MS = f"COALESCE(TRY_CAST(s AS BIGINT), CASE WHEN REGEXP(s, '{_ISO}') THEN {_ISO_MS} END)"
_FRONT_SQL = (
    "SELECT ROW(k, ROW(k, line)), CASE WHEN h BETWEEN :lo AND :hi THEN h ELSE 0 END FROM ("
    " SELECT COALESCE(e, '') AS k, line,"
    # A verdict (the parser's rule: a "verdict" key and no "metrics") never moves event time.
    # The text test comes first, in a CASE of its own, so that an event line (no "verdict")
    # costs no JSON_EXISTS: hence the event branch written twice.
    "  CASE WHEN POSITION('\"verdict\"' IN line) = 0 THEN " + _EVENT_MS + ""
    "  WHEN JSON_EXISTS(line, 'strict $.verdict') AND NOT JSON_EXISTS(line, 'strict $.metrics')"
    "  THEN 0 ELSE " + _EVENT_MS + " END AS h"
    " FROM (SELECT JSON_VALUE(f0, 'strict $.entity') AS e, JSON_VALUE(f0, 'strict $.ts') AS s,"
    "  f0 AS line FROM :view))"
)
_views = iter(range(1 << 62))


def front(
    env: StreamExecutionEnvironment, source: DataStream, parse: ParseConfig, watermarked: bool = False
) -> DataStream:
    """Raw lines ready to key for the detect operator: ``(Row(entity, (entity, line)),
    flink_ts)`` (TIMED_KEYED_LINE_TYPE), in Java (Flink SQL); the detect operator parses the
    line itself (udfs/detect.py), bad lines are its dead letters.

    ``entity`` is the line's ``entity`` as Flink's ``JSON_VALUE`` reads it (strict path: a
    scalar), or ``""`` when it cannot (no entity, not a JSON object, not JSON): the detect
    operator instance that holds key ``""`` dead-letters those lines, as no entity is ``""``.
    ``flink_ts``, which drives the watermark, is the line's ``ts`` when it is an integer, a
    string of digits or an ISO-8601 time of the form ``_ISO`` inside ``parse``'s plausible
    range; otherwise, and for verdicts, 0, which never moves event time. So a line the parser
    reads another way (a timestamp in another ISO form) is still scored exactly; it just does
    not move the watermark.

    Why in Java: a Python parser ahead of the keyed operator, in a task of its own, cost about
    40 us per event of Flink's and PyFlink's work, the largest cost of the job outside the
    detector (README, Performance). One path for every line keeps each source's order: an
    entity's events reach its detector in the order they were read, whatever their timestamps
    look like (two paths, one for what Java can read and one for the rest, reordered them past
    the lateness bound in a test).

    ``watermarked``: ``source`` carries the watermarks (:func:`line_watermarks`) and the front
    passes them on (``SOURCE_WATERMARK()``); without it a table built from a stream drops
    them.
    """
    from pyflink.table import DataTypes, Schema, StreamTableEnvironment

    t_env = StreamTableEnvironment.create(env)
    # UNIX_TIMESTAMP reads a time in the session's zone: the ISO times without an offset are
    # UTC, as for the parser.
    t_env.get_config().set("table.local-time-zone", "UTC")
    view = f"lines_{next(_views)}"
    if watermarked:
        schema = (
            Schema.new_builder()
            .column("f0", DataTypes.STRING())
            .column_by_metadata("rowtime", DataTypes.TIMESTAMP_LTZ(3))
            .watermark("rowtime", "SOURCE_WATERMARK()")
            .build()
        )
        t_env.create_temporary_view(view, source, schema)
    else:
        t_env.create_temporary_view(view, source)
    sql = (
        _FRONT_SQL.replace(":view", view)
        .replace(":lo", str(int(parse.min_ts_ms)))
        .replace(":hi", str(int(parse.max_ts_ms)))
    )
    # (The planner names its operators; they hold no state, so they need no uid.)
    return t_env.to_append_stream(t_env.sql_query(sql), TIMED_KEYED_LINE_TYPE)


def _add_operators_jar(env: StreamExecutionEnvironment) -> bool:
    """Ship the job's jar (udfs/jvm) with the job; False when it was not built (no JDK)."""
    jar = operators_jar()
    if jar is None:
        return False
    uri = jar.as_uri()
    if uri not in configured_jars(env):
        env.add_jars(uri)
    return True


def with_event_time(
    env: StreamExecutionEnvironment,
    stream: DataStream,
    max_out_of_orderness_ms: int,
    ex: ExecutionConfig,
) -> DataStream:
    """``stream`` of ``(Row(entity, (entity, line)), flink_ts)`` (TIMED_KEYED_LINE_TYPE, :func:`front`)
    as ``Row(entity, (entity, line))`` with ``flink_ts`` as its Flink timestamp and bounded
    out-of-orderness watermarks, all in Java. The watermarks are clock-guarded
    (``udfs/jvm/flinkanomaly/ClockGuardWatermarks.java``: a timestamp far ahead moves event
    time only once ``ex.watermark_confirm_entities`` entities agree) when the job's jar is
    built, Flink's plain ones otherwise.

    What PyFlink's ``assign_timestamps_and_watermarks`` builds for a Python timestamp
    assigner, without its first step: a Python operator that turns each record into
    ``(record, timestamp)``, then Flink's ``CustomTimestampAssigner`` (field 1) and
    ``RemoveTimestampMapFunction`` (field 0). The front emits the pair itself, so no Python
    call per event; the records, timestamps and watermarks are the same.
    PyFlink internals used: ``DataStream._j_data_stream`` and the two Java classes above, as
    ``assign_timestamps_and_watermarks`` itself uses them.
    """
    jvm = get_gateway().jvm
    eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    if _add_operators_jar(env):
        strategy = jvm.flinkanomaly.ClockGuardWatermarks(
            max_out_of_orderness_ms, ex.watermark_max_jump_ms, ex.watermark_confirm_entities
        )
    else:
        strategy = watermark_strategy(max_out_of_orderness_ms)._j_watermark_strategy
    timed = DataStream(
        stream._j_data_stream.assignTimestampsAndWatermarks(
            strategy.withTimestampAssigner(eventtime.CustomTimestampAssigner())
        )
    ).name("watermarks").uid("watermarks")
    return (
        DataStream(
            timed._j_data_stream.map(
                eventtime.RemoveTimestampMapFunction(), KEYED_LINE_TYPE.get_java_type_info()
            )
        )
        .name("watermarks-unwrap")
        .uid("watermarks-unwrap")
    )


def line_watermarks(env: StreamExecutionEnvironment, cfg: JobConfig) -> WatermarkStrategy | None:
    """The Kafka source's watermark strategy: one clock-guarded generator per split (a
    partition), reading each raw line's event time as :func:`front` does
    (``udfs/jvm/flinkanomaly/LineWatermarks.java``); the job's watermark is the smallest of the
    partitions'. So an event is never late because another partition was read faster (a
    backlog, a restore): with one generator after the front, it could be, by how far the
    reading of one partition ran ahead. A partition with no timestamped event for
    ``execution.source_idle_ms`` holds nothing back. ``None`` without the job's jar (no JDK):
    the watermarks are then made after the front (:func:`with_event_time`).
    """
    if not _add_operators_jar(env):
        return None
    ex, parse = cfg.execution, cfg.parse
    j_strategy = get_gateway().jvm.flinkanomaly.LineWatermarks(
        cfg.detector.lateness.max_out_of_orderness_ms, ex.watermark_max_jump_ms,
        ex.watermark_confirm_entities, int(parse.min_ts_ms), int(parse.max_ts_ms),
        ex.source_idle_ms,
    )
    return WatermarkStrategy(j_strategy)


def stamp_event_time(stream: DataStream) -> DataStream:
    """What :func:`with_event_time` gives, for a source that made the watermarks itself
    (:func:`line_watermarks`): each row with the front's ``flink_ts`` as its Flink timestamp,
    the source's watermarks passed on (``udfs/jvm/flinkanomaly/StampTimestamps.java``)."""
    j_stream = stream._j_data_stream.transform(
        "event-time", KEYED_LINE_TYPE.get_java_type_info(), get_gateway().jvm.flinkanomaly.StampTimestamps()
    )
    return DataStream(j_stream).name("event-time").uid("event-time")


def batch_lines(
    env: StreamExecutionEnvironment, stream: DataStream, max_lines: int, flush_ms: int
) -> DataStream | None:
    """``stream`` of ``Row(entity, (entity, line))`` (KEYED_LINE_TYPE, :func:`with_event_time`)
    as ``Row(entity, (entity, [line, ...]))`` (KEYED_BATCH_TYPE): an entity's lines grouped in
    Java, so that the detect operator is called once per group. ``None`` when the batcher's
    jar was not built (no JDK; ``make native`` builds it): the caller keys the lines as they
    are, with the same results.

    Why: the detect operator's costs per call, not per line (PyFlink's call into Python and
    its conversions, reading the cache, writing the entity's state, moving its timers), were
    about half of its time per event (py-spy on the job, README "Performance"). The batcher
    (``udfs/jvm/flinkanomaly/LineBatcher.java``) keeps no state and reorders nothing the
    detector can see: it lets everything it holds go before each watermark, before each
    checkpoint barrier and at the end of the input, so the detect operator is given the same
    lines and watermarks in the same order, grouped; and a group leaves when ``max_lines``
    lines are held or ``flush_ms`` after its first line (what it adds to the latency).
    PyFlink internals used: ``DataStream._j_data_stream``, as :func:`with_event_time`.
    """
    if not _add_operators_jar(env):
        return None
    op = get_gateway().jvm.flinkanomaly.LineBatcher(max_lines, flush_ms)
    j_stream = stream._j_data_stream.transform(
        "batch-lines", KEYED_BATCH_TYPE.get_java_type_info(), op
    )
    return DataStream(j_stream).name("batch-lines").uid("batch-lines")


def key_by_entity(stream: DataStream, value_type: object = LINE_TYPE) -> KeyedStream:
    """``stream`` of ``Row(entity, (entity, line))`` (KEYED_LINE_TYPE) keyed by entity, in
    Java; the keyed operator is given ``(entity, line)``. The same for the batcher's
    ``Row(entity, (entity, [line, ...]))`` with ``value_type=BATCH_TYPE``.

    What PyFlink's ``key_by`` builds, without its first step: ``key_by`` runs a Python
    operator that turns each record into ``Row(key, record)``, then keys that by its first
    field with Flink's ``KeyByKeySelector`` and key type ``Row(STRING)``. The front already
    emits the pair (:func:`front`), so only the Java step is left: one Python operator fewer
    per event, about half the cost of a keyed no-op job. PyFlink internals used: ``DataStream._j_data_stream`` and the
    ``KeyedStream`` constructor, as ``key_by`` itself uses them.
    """
    j_keyed = stream._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(),
        Types.ROW([Types.STRING()]).get_java_type_info(),
    )
    return KeyedStream(j_keyed, value_type, stream)


def key_lines(
    env: StreamExecutionEnvironment, timed: DataStream, ex: ExecutionConfig, grouped: bool = True
) -> KeyedStream:
    """``timed`` (:func:`with_event_time`) keyed by entity for the detect operator: an
    entity's lines grouped (:func:`batch_lines`) when ``grouped``, ``ex.batch_lines`` > 1 and
    the batcher's jar is built; one line per call otherwise."""
    batched = None
    if grouped and ex.batch_lines > 1:
        batched = batch_lines(env, timed, ex.batch_lines, ex.batch_flush_ms)
    return key_by_entity(timed) if batched is None else key_by_entity(batched, BATCH_TYPE)


def build_pipeline(
    env: StreamExecutionEnvironment,
    cfg: JobConfig,
    source: DataStream,
    control: DataStream | None = None,
    watermarked: bool = False,
) -> dict[str, DataStream]:
    """Wire the job; return its outputs (JSON strings) by name. ``control``: raw live
    configuration changes (udfs/core/live.py), broadcast to every detect instance.
    ``watermarked``: ``source`` generates the watermarks per split (:func:`line_watermarks`);
    otherwise they are made after the front (:func:`with_event_time`)."""
    det = cfg.detector
    if watermarked:
        timed = stamp_event_time(front(env, source, cfg.parse, watermarked=True))
    else:
        timed = with_event_time(
            env, front(env, source, cfg.parse), det.lateness.max_out_of_orderness_ms, cfg.execution
        )
    # (The live path, with its broadcast control input, takes one line per call.)
    keyed = key_lines(env, timed, cfg.execution, grouped=control is None)
    if control is not None:
        control = (
            control.assign_timestamps_and_watermarks(control_watermark_strategy())
            .name("control-watermarks")
            .uid("control-watermarks")
        )
    detected = _detect(keyed, cfg, control)
    outputs = {
        "alerts": detected,
        # Bad input, and verdicts the detectors cannot place in time.
        "dead_letter": detected.get_side_output(DEAD_LETTER_TAG),
        "late": detected.get_side_output(LATE_TAG),
        "drift": detected.get_side_output(DRIFT_TAG),
    }
    if control is not None:  # each change acknowledged (or rejected) once
        audit = (
            control.key_by(lambda _: 0, key_type=Types.INT())
            .process(AuditControl(det), output_type=Types.STRING())
            .name("control-audit")
            .uid("control-audit")
        )
        outputs["dead_letter"] = outputs["dead_letter"].union(audit.get_side_output(DEAD_LETTER_TAG))
        outputs["drift"] = outputs["drift"].union(audit.get_side_output(DRIFT_TAG))
    if det.alerts.global_max_per_hour > 0:
        # One instance judges every alert of the job (udfs/gate.py).
        gated = (
            detected.key_by(lambda _: 0, key_type=Types.INT())
            .process(GateAlerts(det.alerts.global_max_per_hour), output_type=Types.STRING())
            .name("alert-gate")
            .uid("alert-gate")
        )
        outputs["alerts"] = gated
        outputs["drift"] = outputs["drift"].union(gated.get_side_output(DRIFT_TAG))
    if cfg.sink.emit_scores:
        outputs["scores"] = detected.get_side_output(SCORES_TAG)
    if cfg.summaries.enabled:
        outputs["summaries"], late_for_windows = _summaries(timed, cfg)
        outputs["late"] = outputs["late"].union(late_for_windows)
    return outputs


def _detect(keyed: KeyedStream, cfg: JobConfig, control: DataStream | None) -> DataStream:
    """The detect operator over the keyed lines: grouped lines and a journal without live
    changes, one line per call with the broadcast control input otherwise."""
    det, sink = cfg.detector, cfg.sink
    check_river_mode(cfg)
    if control is None:
        return (
            keyed.process(
                DetectAnomalies(
                    det,
                    emit_scores=sink.emit_scores,
                    emit_features=sink.emit_features,
                    snapshot_every=cfg.execution.snapshot_every,
                    cache_size=cfg.execution.state_cache_entities,
                    parse=cfg.parse,
                    artifacts=artifact_bytes(det),
                ),
                output_type=Types.STRING(),
            )
            .name("detect")
            .uid("detect")
        )
    live = DetectAnomaliesLive(
        det, emit_scores=sink.emit_scores, emit_features=sink.emit_features, parse=cfg.parse,
        artifacts=artifact_bytes(det), cache_size=cfg.execution.state_cache_entities,
    )
    return (
        keyed.connect(control.broadcast(live_config_descriptor()))
        .process(live, output_type=Types.STRING())
        .name("detect")
        .uid("detect")
        .process(SplitOutputs(), output_type=Types.STRING())
        .name("detect-outputs")
        .uid("detect-outputs")
    )


def _summaries(timed: DataStream, cfg: JobConfig) -> tuple[DataStream, DataStream]:
    """The opt-in sliding-window summaries of each entity's events, and the records of the
    events that came too late for their windows."""
    sc = cfg.summaries
    late_tag = summary_late_tag()
    windowed = (
        # Events only (parsed again: summaries are opt-in).
        timed.flat_map(SummaryEvents(cfg.parse), output_type=EVENT_TYPE)
        .name("summaries-events")
        .uid("summaries-events")
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .window(SlidingEventTimeWindows.of(Time.milliseconds(sc.size_ms), Time.milliseconds(sc.slide_ms)))
        .side_output_late_data(late_tag)
    )
    summaries = (
        windowed.aggregate(
            SummaryAggregate(sc.alpha),
            SummaryWindow(),
            accumulator_type=Types.PICKLED_BYTE_ARRAY(),
            output_type=Types.STRING(),
        )
        .name("summaries")
        .uid("summaries")
    )
    late_for_windows = (
        summaries.get_side_output(late_tag)
        .map(summary_late_record, output_type=Types.STRING())
        .name("summaries-late")
        .uid("summaries-late")
    )
    return summaries, late_for_windows


def _tagged(stream: DataStream, kind: str) -> DataStream:
    prefix = kind + "\t"
    return (
        stream.map(lambda s: prefix + s, output_type=Types.STRING())
        .name(f"tag-{kind}")
        .uid(f"tag-{kind}")
    )


def attach_file_sinks(outputs: dict[str, DataStream], out_dir: str, roll_ms: int) -> None:
    """Each output to Flink's ``FileSink`` under ``out_dir/<output>/`` (``sink.writer: flink``).

    Row format, one JSON line per record; part files ``<output>-<uuid>-<n>.jsonl`` roll at
    128 MB, after ``roll_ms`` open or ``roll_ms`` without records, and become visible when a
    checkpoint commits them (exactly-once; at the end of a bounded input the final
    checkpoint commits the rest). ``out_dir`` is any Flink filesystem path; a bare path is
    taken as a local one.
    """
    from pyflink.common import Encoder
    from pyflink.datastream.connectors.file_system import (
        BucketAssigner,
        FileSink,
        OutputFileConfig,
        RollingPolicy,
    )

    base = out_dir if "://" in out_dir else Path(out_dir).resolve().as_uri()
    for name, stream in outputs.items():
        stem = OUTPUT_FILES[name].removesuffix(".jsonl")
        sink = (
            FileSink.for_row_format(f"{base.rstrip('/')}/{stem}", Encoder.simple_string_encoder())
            .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
            .with_rolling_policy(RollingPolicy.default_rolling_policy(
                part_size=128 * 1024 * 1024, rollover_interval=roll_ms,
                inactivity_interval=roll_ms))
            .with_bucket_check_interval(min(roll_ms, 60_000))
            .with_output_file_config(
                OutputFileConfig.builder().with_part_prefix(stem).with_part_suffix(".jsonl").build())
            .build()
        )
        stream.sink_to(sink).name(f"file_{name}").uid(f"file-sink-{name}")


def collect_to_files(
    outputs: dict[str, DataStream], out_dir: str | Path, job_name: str
) -> Counter[str]:
    """Run the job and write each output to ``out_dir/<name>.jsonl``; return the counts.

    The records are collected by the client (``execute_and_collect``), so this sink is for
    bounded inputs: local runs, the demo and tests. Lines are written in arrival order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(outputs)
    tagged = [_tagged(outputs[n], n) for n in names]
    union = tagged[0].union(*tagged[1:]) if len(tagged) > 1 else tagged[0]
    files = {
        n: open(out / OUTPUT_FILES[n], "w") for n in OUTPUT_FILES if n in names
    }
    counts: Counter[str] = Counter({n: 0 for n in files})
    try:
        with union.execute_and_collect(job_name) as results:
            for line in results:
                kind, _, payload = line.partition("\t")
                files[kind].write(payload + "\n")
                counts[kind] += 1
    finally:
        for f in files.values():
            f.close()
    return counts


def read_jsonl(path: str | Path) -> list[dict[str, object]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
