"""``python -m job run``: the Flink job (a local MiniCluster, or submitted with ``flink run``)."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from job.config import JobConfig

__all__ = ["add_arguments", "run", "run_job", "summary"]

USES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        help="JSON-lines input file (shortcut for --set source.type=file --set source.path=FILE)",
    )
    p.add_argument("--out", help="output folder (shortcut for --set sink.dir=DIR)")


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` items ``--input`` and ``--out`` stand for."""
    extra = []
    if args.input:
        extra += ["source.type=file", f"source.path={args.input}"]
    if args.out:
        extra.append(f"sink.dir={args.out}")
    return extra


def run(args: argparse.Namespace, cfg: JobConfig) -> int:
    t0 = time.monotonic()
    counts = run_job(cfg)
    if cfg.sink.type == "kafka":
        print(f"job ended or submitted after {time.monotonic() - t0:.1f} s; outputs in Kafka")
        return 0
    print(summary(counts, Path(cfg.sink.dir), time.monotonic() - t0))
    return 0


def summary(counts: Counter[str], out_dir: Path, elapsed: float) -> str:
    alerts_path = out_dir / "alerts.jsonl"
    by_sev: Counter[str] = Counter()
    entities_alerted: set[str] = set()
    if alerts_path.exists():
        for line in alerts_path.read_text().splitlines():
            a = json.loads(line)
            if a["kind"] == "open":
                by_sev[a["severity"]] += 1
                entities_alerted.add(a["entity"])
    lines = [
        f"events read      {counts['events']:>8,}",
        f"entities         {counts['entities']:>8,}",
        f"alerts opened    {sum(by_sev.values()):>8,}   "
        + "  ".join(f"{s}: {by_sev.get(s, 0)}" for s in ("info", "warning", "critical"))
        + (f"   ({', '.join(sorted(entities_alerted))})" if entities_alerted else ""),
        f"alert records    {counts['alerts']:>8,}   (open, escalate, resolved)",
        f"dead letters     {counts['dead_letter']:>8,}",
        f"late events      {counts['late']:>8,}",
        f"outputs          {out_dir}/",
        f"took             {elapsed:>8.1f} s",
    ]
    return "\n".join(lines)


def _input_stats(path: Path) -> tuple[int, int]:
    from job.io import read_records
    from udfs.core.events import Event, ParseConfig

    events = 0
    entities: set[str] = set()
    for rec in read_records(path, ParseConfig()):
        if isinstance(rec, Event):
            events += 1
            entities.add(rec.entity)
    return events, len(entities)


def run_job(cfg: JobConfig, job_name: str = "anomaly-detection") -> Counter[str]:
    from job.demo_data import write_demo
    from job.pipeline import (
        build_pipeline,
        collect_to_files,
        create_environment,
        file_source,
        line_watermarks,
    )

    path = cfg.source.path
    if cfg.source.type == "demo":
        path = str(Path(cfg.sink.dir) / "input.jsonl")
        write_demo(path)
    elif cfg.source.type == "file" and not Path(path).is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    env = create_environment(cfg)
    if "kafka" in (cfg.source.type, cfg.sink.type):
        from job.kafka_io import ensure_connector, preflight

        # Both before the job is submitted: failing there would end in a Java stack trace.
        ensure_connector(env)
        if cfg.kafka.preflight:
            preflight(cfg.kafka, events_topic=cfg.source.type == "kafka")
    if cfg.source.type == "kafka":
        from job.kafka_io import kafka_source

        # Watermarks per partition, made in the source (job/pipeline.py line_watermarks).
        watermarks = line_watermarks(env, cfg)
        source = kafka_source(env, cfg.kafka, watermarks=watermarks)
    else:
        watermarks = None
        source = file_source(env, path)
        if cfg.source.verdicts_path:
            if not Path(cfg.source.verdicts_path).is_file():
                raise FileNotFoundError(f"verdicts file not found: {cfg.source.verdicts_path}")
            # The detect operator tells verdicts from events; both are keyed by entity.
            source = source.union(file_source(env, cfg.source.verdicts_path, "verdicts"))
    control = None
    if cfg.source.type == "kafka" and cfg.kafka.read_control:
        from job.kafka_io import kafka_source

        control = kafka_source(env, cfg.kafka, control=True)
    elif cfg.source.control_path:
        if not cfg.source.control_watch_ms and not Path(cfg.source.control_path).is_file():
            raise FileNotFoundError(f"control file not found: {cfg.source.control_path}")
        control = file_source(env, cfg.source.control_path, "control", cfg.source.control_watch_ms)
    outputs = build_pipeline(env, cfg, source, control, watermarked=watermarks is not None)
    if cfg.sink.type == "kafka":
        from job.kafka_io import attach_kafka_sinks

        bounded = cfg.source.type != "kafka" or cfg.kafka.bounded
        attach_kafka_sinks(outputs, cfg.kafka, bounded_input=bounded)
        env.execute(job_name)  # detached under `flink run -d`: returns once submitted
        return Counter()
    if cfg.sink.writer == "flink":
        from job.pipeline import attach_file_sinks

        attach_file_sinks(outputs, cfg.sink.dir, cfg.sink.roll_interval_ms)
        env.execute(job_name)
        return Counter()
    counts = collect_to_files(outputs, cfg.sink.dir, job_name)
    if cfg.source.type == "kafka":
        return counts
    events, entities = _input_stats(Path(path))
    counts["events"] = events
    counts["entities"] = entities
    return counts


