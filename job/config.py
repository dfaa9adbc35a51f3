"""The job's configuration: one typed tree of frozen dataclasses, from YAML plus ``--set``.

Loading order: the dataclass defaults, then a profile (``job/profiles/<name>.yaml``) or a
YAML file given with ``--config``, then each ``--set section.key=value`` (the value is read
as YAML, so ``--set detector.features.ratio_pairs='[[1m, 1h]]'`` works). Unknown keys and
bad values are errors; every problem is reported at once, each naming its key, before the
job starts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from job.kafka_io import KafkaConfig
from udfs.core.config import DetectorConfig
from udfs.core.events import ParseConfig
from udfs.core.typed import build as _build
from udfs.core.typed import merge as _merge
from udfs.core.typed import plain as _plain

__all__ = [
    "ConfigError",
    "artifact_bytes",
    "check_custom_models",
    "check_river_mode",
    "ExecutionConfig",
    "JobConfig",
    "SinkConfig",
    "SourceConfig",
    "load_config",
]

PROFILES_DIR = Path(__file__).parent / "profiles"


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class SourceConfig:
    """Where events come from.

    Parameters
    ----------
    type
        ``file`` (JSON lines at ``path``), ``demo`` (the bundled sample stream) or ``kafka``
        (``kafka.events_topic``, see the ``kafka`` section).
    path
        Input file for ``type: file``.
    verdicts_path
        Optional JSON-lines file of operator verdicts (``{alert_id, entity, verdict, reason,
        ts}``, see ``udfs/core/feedback.py``) read beside the events (``type: file|demo``;
        with Kafka set ``kafka.read_verdicts``). Verdicts may also sit among the events of the
        input itself: a line with a ``verdict`` key is a verdict.

    control_path
        Optional JSON-lines file of live configuration changes (``udfs/core/live.py``),
        applied through broadcast state while the job runs (with Kafka set
        ``kafka.read_control``).
    control_watch_ms
        Watch ``control_path`` (a file or a folder) for new lines / files every this many
        ms instead of reading it once; the job then runs until it is cancelled.
    """

    type: str = "demo"
    path: str = ""
    verdicts_path: str = ""
    control_path: str = ""
    control_watch_ms: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.type not in ("file", "demo", "kafka"):
            problems.append(f"type must be file, demo or kafka, got {self.type!r}")
        if self.type == "file" and not self.path:
            problems.append("path is required when type is file")
        if self.control_watch_ms < 0:
            problems.append(f"control_watch_ms must be >= 0, got {self.control_watch_ms}")
        if self.control_watch_ms and not self.control_path:
            problems.append("control_watch_ms needs control_path")
        if self.type == "kafka" and self.verdicts_path:
            problems.append("verdicts_path is for file inputs; with Kafka set kafka.read_verdicts")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class SinkConfig:
    """Where outputs go.

    Parameters
    ----------
    type
        ``file``: each output into ``dir``, by the writer ``writer`` names. ``kafka``: each
        output to its topic of the ``kafka`` section (exactly-once with checkpointing).
    dir
        Output folder of the file sink (with ``writer: flink``, any Flink filesystem URI:
        ``file:///``, ``s3://``, ``hdfs://``, ...).
    writer
        Who writes the files of ``type: file``. ``client``: the process that runs the job
        collects every record and writes ``alerts.jsonl``, ``drift.jsonl``,
        ``dead_letter.jsonl``, ``late.jsonl`` (``scores.jsonl`` with ``emit_scores``) into
        ``dir``: for bounded inputs, local runs and tests (``python -m job run``, the
        default there). ``flink``: Flink's ``FileSink`` on the TaskManagers writes each
        output under ``dir/<output>/`` as part files (``<output>-<uuid>-<n>.jsonl``),
        committed on checkpoints: exactly-once, nothing through the client; a file is
        final once it is not hidden (``.<output>-...inprogress...``). The default of
        ``flink run -py job/main.py``. An unbounded input needs checkpointing (the
        cluster's ``execution.checkpointing.interval`` or ``execution.checkpoint_interval_ms``),
        or no file is ever committed.
    roll_interval_ms
        With ``writer: flink``: a part file is closed after this long open, or this long
        without records, or at 128 MB, and is visible at the next checkpoint after that.
        Shorter: outputs visible sooner, more files.
    emit_scores
        Also emit one score record per scored event (for audits and equality tests).
    emit_features
        With ``emit_scores``: each score record also carries the event's features.
    """

    type: str = "file"
    dir: str = "out/run"
    writer: str = "client"
    roll_interval_ms: int = 60_000
    emit_scores: bool = False
    emit_features: bool = False

    def __post_init__(self) -> None:
        if self.type not in ("file", "kafka"):
            raise ValueError(f"type must be file or kafka, got {self.type!r}")
        if self.writer not in ("client", "flink"):
            raise ValueError(f"writer must be client or flink, got {self.writer!r}")
        if self.roll_interval_ms < 100:
            raise ValueError(f"roll_interval_ms must be >= 100, got {self.roll_interval_ms}")


@dataclass(frozen=True)
class ExecutionConfig:
    """How Flink runs the job.

    Parameters
    ----------
    mode
        ``thread`` (PEMJA, Python inside the JVM: the default, fastest for keyed state) or
        ``process`` (a Beam Python worker over gRPC).
    parallelism
        Parallelism of every operator.
    python_executable
        Interpreter of the Python workers; empty means the one running the client.
    checkpoint_interval_ms
        Exactly-once checkpoints every this many ms; 0 leaves checkpointing to the cluster's
        ``config.yaml`` (off on a local MiniCluster).
    restart_attempts
        With ``checkpoint_interval_ms`` > 0, restarts after a failure, from the last checkpoint:
        the first after 200 ms, each next one twice as late up to 10 s, so that they outlast
        the time Flink takes to notice a lost TaskManager (its slots stay offered for about
        20 s); counted afresh once the job has run for 60 s without a failure.
    state_backend
        ``""`` (the cluster's ``state.backend.type``; the heap on a local MiniCluster),
        ``hashmap`` (state as objects on the TaskManager heap; full checkpoints) or
        ``rocksdb`` (state on local disk through RocksDB, with incremental checkpoints: for
        state larger than the heap, and checkpoints that upload only what changed). The same
        outputs either way; ``scripts/cluster.sh start --state-backend rocksdb`` sets the
        cluster's default.
    snapshot_every
        The detector's full state is encoded on every this many writes of an entity; the
        writes between append the event to a journal that a restore replays (udfs/detect.py).
        Higher is faster per event and costs a longer replay after a restore and up to this
        many events' payloads of state; 1 encodes the full state on every event. With a live
        control input the journal is off (1), whatever this says (udfs/detect.py set_config).
    state_cache_entities
        Decoded detectors each detect instance keeps in memory, most recently used first
        (udfs/detect.py): an entity in it costs no state read or decode. Once it is full,
        an event of an entity outside it is deferred, unread, to its next load (its release
        timer): one decode and encode of its state per event. More costs Python memory (a detector with
        4 metrics is tens of kB of objects).
    batch_lines
        Up to this many lines are grouped per entity ahead of the detect operator, in Java
        (udfs/jvm, job/pipeline.py ``batch_lines``), so that the operator is called once per
        group: its per-call costs (PyFlink's call into Python, the state write, the timers)
        are paid once per group, not per line. A group leaves at the latest
        ``batch_flush_ms`` after its first line, at every watermark and checkpoint, and at
        the end of the input; the outputs are the same records as without it. 1 turns it off
        (one call per line, as with a live control input, which it does not apply to).
    batch_flush_ms
        The most a line waits in the batcher (processing time): what grouping adds to the
        latency from a line to its records.
    buffer_timeout_ms
        Flink's network buffer timeout (``execution.buffer-timeout``): the most a record waits
        in a network buffer that is not full before it is sent on. Every exchange between
        operators can add up to this much to the latency from an event to its records; lower
        costs throughput (more, smaller buffers). ``-1`` sends only full buffers.
    watermark_max_jump_ms, watermark_confirm_entities
        Event time (the watermark) follows the newest timestamp when it is at most
        ``watermark_max_jump_ms`` ahead of the newest so far; a timestamp further ahead moves
        it only once ``watermark_confirm_entities`` distinct entities (or every entity of the
        last 64 events, if fewer) are that far ahead, so a few hosts with wrong clocks cannot
        drag every entity's event time forward (udfs/jvm ``ClockGuardWatermarks``; without a
        JDK, Flink's plain bounded out-of-orderness).
    source_idle_ms
        With the Kafka source, the watermark is generated per partition and the job's is the
        smallest (udfs/jvm ``LineWatermarks``), so an event is never late because another
        partition was read faster. A partition with no timestamped event for this long
        (processing time; an empty partition, one of verdicts only, one whose producers went
        quiet) holds nothing back until its next one; until then it holds the watermark, and
        the records waiting for it. So with ``kafka.read_verdicts`` the verdict topic's
        partitions hold it for this long after each start or restart: lower it there.
        ``0``: a partition is never idle.
    """

    mode: str = "thread"
    parallelism: int = 1
    python_executable: str = ""
    checkpoint_interval_ms: int = 0
    restart_attempts: int = 3
    state_backend: str = ""
    snapshot_every: int = 16
    state_cache_entities: int = 4096
    batch_lines: int = 4096
    batch_flush_ms: int = 50
    buffer_timeout_ms: int = 10
    watermark_max_jump_ms: int = 10_000
    watermark_confirm_entities: int = 3
    source_idle_ms: int = 60_000

    def __post_init__(self) -> None:
        problems = []
        if self.mode not in ("thread", "process"):
            problems.append(f"mode must be thread or process, got {self.mode!r}")
        if self.parallelism < 1:
            problems.append(f"parallelism must be >= 1, got {self.parallelism}")
        if self.checkpoint_interval_ms != 0 and self.checkpoint_interval_ms < 10:
            problems.append(
                f"checkpoint_interval_ms must be 0 or >= 10, got {self.checkpoint_interval_ms}"
            )
        if self.restart_attempts < 0:
            problems.append(f"restart_attempts must be >= 0, got {self.restart_attempts}")
        if self.state_backend not in ("", "hashmap", "rocksdb"):
            problems.append(
                f"state_backend must be hashmap or rocksdb (or empty), got {self.state_backend!r}"
            )
        if self.snapshot_every < 1:
            problems.append(f"snapshot_every must be >= 1, got {self.snapshot_every}")
        if not 1 <= self.state_cache_entities <= 10_000_000:
            problems.append(
                f"state_cache_entities must be in [1, 10000000], got {self.state_cache_entities}"
            )
        if not 1 <= self.batch_lines <= 65_536:
            problems.append(f"batch_lines must be in [1, 65536], got {self.batch_lines}")
        if not 1 <= self.batch_flush_ms <= 60_000:
            problems.append(f"batch_flush_ms must be in [1, 60000], got {self.batch_flush_ms}")
        if not -1 <= self.buffer_timeout_ms <= 60_000:
            problems.append(
                f"buffer_timeout_ms must be in [-1, 60000], got {self.buffer_timeout_ms}"
            )
        if self.watermark_max_jump_ms < 0:
            problems.append(
                f"watermark_max_jump_ms must be >= 0, got {self.watermark_max_jump_ms}"
            )
        if not 1 <= self.watermark_confirm_entities <= 64:
            problems.append(
                "watermark_confirm_entities must be in [1, 64], got "
                f"{self.watermark_confirm_entities}"
            )
        if not 0 <= self.source_idle_ms <= 86_400_000:
            problems.append(f"source_idle_ms must be in [0, 86400000], got {self.source_idle_ms}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class SummaryConfig:
    """Per-entity window summaries for dashboards (Flink sliding event-time windows).

    Parameters
    ----------
    enabled
        Off by default: Python window operators do state and timer work for every window an
        event belongs to (``size_ms / slide_ms`` of them).
    size_ms, slide_ms
        Window length and slide.
    alpha
        Relative error of the p95 (a log-bucketed sketch).
    """

    enabled: bool = False
    size_ms: int = 300_000
    slide_ms: int = 60_000
    alpha: float = 0.01

    def __post_init__(self) -> None:
        problems = []
        if self.size_ms <= 0 or self.slide_ms <= 0:
            problems.append(f"size_ms and slide_ms must be > 0, got {self.size_ms} and {self.slide_ms}")
        elif self.size_ms % self.slide_ms:
            problems.append(f"size_ms ({self.size_ms}) must be a multiple of slide_ms ({self.slide_ms})")
        if not 0.0 < self.alpha < 0.5:
            problems.append(f"alpha must be in (0, 0.5), got {self.alpha}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class JobConfig:
    """The whole configuration tree."""

    source: SourceConfig = field(default_factory=SourceConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    summaries: SummaryConfig = field(default_factory=SummaryConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)


def _parse_set(item: str, problems: list[str]) -> dict[str, Any] | None:
    if "=" not in item:
        problems.append(f"--set {item!r}: expected section.key=value")
        return None
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        problems.append(f"--set {item!r}: empty key segment")
        return None
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problems.append(f"{key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})")
        return None
    node: dict[str, Any] = {}
    cur = node
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def load_config(
    path: str | None = None, overrides: list[str] | tuple[str, ...] = (), profile: str | None = None
) -> JobConfig:
    """Build and validate the configuration; raise :class:`ConfigError` listing all problems.

    ``profile`` names a file in ``job/profiles/``; ``path`` is any YAML file (both may be
    given: the file is applied over the profile).
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    sources = []
    if profile:
        p = PROFILES_DIR / f"{profile}.yaml"
        if not p.is_file():
            known = ", ".join(sorted(f.stem for f in PROFILES_DIR.glob("*.yaml")))
            raise ConfigError([f"profile {profile!r} not found (known: {known})"])
        sources.append(p)
    if path:
        sources.append(Path(path))
    for src in sources:
        try:
            loaded = yaml.safe_load(src.read_text()) or {}
        except OSError as exc:
            raise ConfigError([f"cannot read configuration file {src}: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{src}: not valid YAML: {exc}"]) from None
        if not isinstance(loaded, dict):
            raise ConfigError([f"{src}: the top level must be a mapping"])
        data = _merge(data, loaded)
    for item in overrides:
        node = _parse_set(item, problems)
        if node is not None:
            data = _merge(data, node)
    cfg = _build(JobConfig, data, "", problems)
    if problems:
        raise ConfigError(problems)
    cfg = _with_filter(typing.cast(JobConfig, cfg))
    check_custom_models(cfg)
    return cfg


def check_custom_models(cfg: JobConfig) -> None:
    """Build each ``detector.model.custom`` model once, in the client: a River spec that
    names anything but River's estimators, or an artifact that is not one, stops the job
    before it starts, with one line naming the key."""
    problems = []
    for i, spec in enumerate(cfg.detector.model.custom):
        key = f"detector.model.custom[{i}]"
        try:
            if spec.kind == "river":
                from udfs.core.models.river_spec import build_spec

                build_spec(spec.spec)
            else:
                from udfs.core.models.artifact import load_artifact

                load_artifact(spec.path)
        except ValueError as exc:
            what = "spec" if spec.kind == "river" else "path"
            problems.append(f"{key}.{what}: {exc}")
    if problems:
        raise ConfigError(problems)


def check_river_mode(cfg: JobConfig) -> None:
    """River models run in process mode only (River's anomaly module imports scipy.stats,
    which hangs a thread-mode worker)."""
    for i, spec in enumerate(cfg.detector.model.custom):
        if spec.kind == "river" and cfg.execution.mode != "process":
            raise ConfigError([
                f"detector.model.custom[{i}].kind: a River model needs execution.mode=process "
                "(River imports scipy.stats, which hangs a thread-mode Python worker)"
            ])


def artifact_bytes(det: DetectorConfig) -> dict[str, bytes]:
    """The bytes of every artifact of ``det.model.custom``, by path, for the workers."""
    return {
        spec.path: Path(spec.path).read_bytes()
        for spec in det.model.custom
        if spec.kind == "artifact"
    }


def _with_filter(cfg: JobConfig) -> JobConfig:
    """Read ``detector.filter.artifact`` here, in the client: workers get plain numbers."""
    flt = cfg.detector.filter
    if not flt.artifact or flt.coef:
        return cfg


    from udfs.core.alert_filter import filter_from_artifact

    path = flt.artifact
    if not Path(path).is_file():
        raise ConfigError([f"detector.filter.artifact: no such file {path} (train one with train-filter)"])
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError([f"detector.filter.artifact: {path}: not an alert-filter artifact (not JSON: {exc})"]) from None
    except OSError as exc:
        raise ConfigError([f"detector.filter.artifact: {exc}"]) from None
    try:
        resolved = filter_from_artifact(data, path)
    except ValueError as exc:
        raise ConfigError([f"detector.filter.artifact: {exc}"]) from None
    if flt.threshold > 0:  # the user's threshold over the artifact's
        resolved = dataclasses.replace(resolved, threshold=flt.threshold)
    detector = dataclasses.replace(cfg.detector, filter=resolved)
    return dataclasses.replace(cfg, detector=detector)


def to_plain(cfg: Any) -> Any:
    """The configuration as plain YAML-able data."""
    return _plain(cfg)


def python_executable(cfg: JobConfig) -> str:
    return cfg.execution.python_executable or sys.executable
