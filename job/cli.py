"""Command line: ``python -m job {run,replay,demo,config} ...``.

Every error a user can cause ends with one line saying what is wrong and what to do, and a
non-zero exit code; no stack trace.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from job.config import ConfigError, JobConfig, load_config, to_plain
from job.report import add_arguments as add_report_arguments
from job.tune import add_arguments as add_tune_arguments

__all__ = ["main"]

_CONFIG_HELP = """\
configuration:
  --profile NAME      a profile from job/profiles/ (default: default)
  --config FILE       a YAML file applied over the profile
  --set KEY=VALUE     override one key, repeatable; VALUE is YAML
                      e.g. --set detector.threshold.target_alert_rate=0.0005
                           --set execution.mode=process --set sink.dir=out/x
  `python -m job config --reference` lists every key with its type and default.
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", default="default", help="profile in job/profiles/ (default: %(default)s)"
    )
    p.add_argument("--config", help="YAML configuration file applied over the profile")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key (repeatable)",
    )


def _load(args: argparse.Namespace, extra: list[str] | None = None) -> JobConfig:
    return load_config(args.config, [*(extra or []), *args.set], profile=args.profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m job",
        description="Real-time per-entity anomaly detection on Apache Flink (PyFlink + River).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the Flink job (local MiniCluster unless submitted with `flink run`)",
        description="Run the Flink job: source -> parse -> watermarks -> key_by(entity) -> detect -> sinks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    run.add_argument(
        "--input",
        help="JSON-lines input file (shortcut for --set source.type=file --set source.path=FILE)",
    )
    run.add_argument("--out", help="output folder (shortcut for --set sink.dir=DIR)")
    _add_config_args(run)

    rep = sub.add_parser(
        "replay",
        help="run the same detection core in plain Python over a file (the oracle)",
        description="Replay a JSON-lines or CSV file through the detection core; write scores.csv and the outputs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    rep.add_argument("--input", required=True, help="JSON-lines (.jsonl/.json) or CSV (.csv) file")
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument(
        "--emit-features", action="store_true", help="add one column per feature to scores.csv"
    )
    rep.add_argument(
        "--ts-column", default="timestamp", help="CSV: timestamp column (default: %(default)s)"
    )
    rep.add_argument("--entity-column", help="CSV: entity column")
    rep.add_argument("--entity", help="CSV: one entity name for the whole file")
    rep.add_argument(
        "--metrics", help="CSV: comma-separated metric columns (default: all other columns)"
    )
    _add_config_args(rep)

    demo = sub.add_parser(
        "demo", help="write the demo stream, run the Flink job on it, print a summary"
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    _add_config_args(demo)

    nab = sub.add_parser(
        "nab",
        help="run the detection core over the Numenta Anomaly Benchmark and score it",
        description="Replay every NAB data file through the detection core (one entity per file, "
        "one global configuration); write NAB result files and scores.json (swept threshold and "
        "the system's own alerts, every profile) and print them beside the published scores.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    nab.add_argument(
        "--nab-dir", required=True, help="root of a NAB v1.1 checkout (data/, labels/, config/)"
    )
    nab.add_argument("--out", required=True, help="output folder (results/ and scores.json)")
    nab.add_argument(
        "--files",
        action="append",
        default=[],
        metavar="GLOB",
        help="only data files whose path under data/ matches, e.g. 'realKnownCause/*.csv' (repeatable)",
    )
    nab.add_argument(
        "--workers", type=int, default=2, help="worker processes (default: %(default)s)"
    )
    _add_config_args(nab)

    rpt = sub.add_parser(
        "report",
        help="write an HTML report (charts, alerts and their explanations) of a run's outputs",
        description="Read a run folder (scores.csv or scores.jsonl, alerts.jsonl, drift.jsonl, "
        "dead_letter.jsonl, late.jsonl, and the input events for the metric values) and write "
        "OUT/index.html, self-contained, plus one OUT/<entity>.png per entity.",
    )
    add_report_arguments(rpt)

    tun = sub.add_parser(
        "tune",
        help="replay a sample once per target alert rate: alerts per entity per day, "
        "precision / recall / F1 against labels",
        description="Replay the input through the detection core once per target alert rate\n"
        "(in parallel processes); print the alert episodes opened, per entity per day, and\n"
        "with --labels episode-level precision / recall / F1: an episode opening inside\n"
        "[start - slack, end] of an incident of its entity finds it (slack: 10 minutes).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    add_tune_arguments(tun)
    _add_config_args(tun)

    ev = sub.add_parser(
        "eval",
        help="detection quality on NAB, ASD and SKAB with one configuration",
        description="Run the detection core over the labelled benchmarks (NAB, ASD, SKAB) with\n"
        "one configuration; write <out>/<date>.json and .md (NAB score, ROC AUC, PR AUC,\n"
        "VUS-PR, alert recall and precision, delays, drift and health records per day).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP,
    )
    from tools.evaluation.evaluate import add_arguments as add_eval_arguments

    add_eval_arguments(ev)
    _add_config_args(ev)

    bench = sub.add_parser(
        "bench",
        help="measure throughput, latency and state size: the job vs the plain loop vs a naive baseline",
        description="Benchmark in one run on this machine (see bench/README.md): writes "
        "<out>/<date>.json and .md and prints the ratios job / plain loop and job / naive.",
    )
    bench.add_argument("--quick", action="store_true", help="a shorter run (about 3 minutes)")
    bench.add_argument("--out", default="bench/results", help="results folder (default: %(default)s)")
    bench.add_argument(
        "--only",
        default="",
        help="comma-separated parts: state,profile,plain,thread,naive,latency,checkpoint,process,cluster",
    )
    bench.add_argument("--keep-tmp", action="store_true", help="keep the generated inputs in bench/tmp")

    # Listed for --help; main() hands its arguments to job/train_filter.py.
    sub.add_parser(
        "train-filter",
        help="train the false-positive alert filter from alerts and operator verdicts",
        add_help=False,
    )

    cfg = sub.add_parser(
        "config", help="print the effective configuration, or the reference of every key"
    )
    cfg.add_argument(
        "--reference",
        action="store_true",
        help="print every key with its type, default and description (markdown)",
    )
    cfg.add_argument(
        "--schema", action="store_true", help="print a JSON Schema of the configuration file"
    )
    _add_config_args(cfg)
    return parser


def _summary(counts: Counter[str], out_dir: Path, elapsed: float) -> str:
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


def cmd_run(cfg: JobConfig, job_name: str = "anomaly-detection") -> Counter[str]:
    from job.demo_data import write_demo
    from job.pipeline import build_pipeline, collect_to_files, create_environment, file_source

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

        source = kafka_source(env, cfg.kafka)
    else:
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
    outputs = build_pipeline(env, cfg, source, control)
    if cfg.sink.type == "kafka":
        from job.kafka_io import attach_kafka_sinks

        bounded = cfg.source.type != "kafka" or cfg.kafka.bounded
        attach_kafka_sinks(outputs, cfg.kafka, bounded_input=bounded)
        env.execute(job_name)  # detached under `flink run -d`: returns once submitted
        return Counter()
    counts = collect_to_files(outputs, cfg.sink.dir, job_name)
    if cfg.source.type == "kafka":
        return counts
    events, entities = _input_stats(Path(path))
    counts["events"] = events
    counts["entities"] = entities
    return counts


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["train-filter"]:
        # Its own parser (job/train_filter.py): --alerts, --verdicts, --out.
        from job.train_filter import main as train_filter_main

        return train_filter_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "fix the keys above (see `python -m job config --reference`) and run again",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        if exc.filename is None and not isinstance(exc, FileNotFoundError):
            raise  # not about a path the user gave (e.g. the JVM's gateway went away)
        print(f"error: {_path_problem(exc)}: check the path and run again", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "Py4JJavaError":  # py4j is only imported with pyflink
            raise
        print(f"error: {_java_failure(exc)}", file=sys.stderr)
        return 1


def _java_failure(exc: Exception) -> str:
    """One line for a failure inside Flink: the Java root cause; the whole trace to a file."""
    import tempfile

    fd, trace = tempfile.mkstemp(prefix="anomaly-job-error-", suffix=".log")
    with open(fd, "w") as f:
        f.write(str(exc))
    try:
        cause = exc.java_exception  # type: ignore[attr-defined]
        while cause.getCause() is not None:
            cause = cause.getCause()
        root = f"{cause.getClass().getSimpleName()}: {_first_words(str(cause.getMessage() or ''))}"
    except Exception:  # the JVM is gone: the last line of the trace
        root = str(exc).strip().splitlines()[-1]
    return f"the Flink job failed: {root[:300]} (whole trace in {trace}): fix the cause and run again"


def _first_words(message: str) -> str:
    """The telling line of a Java message: its first, or for a Python error raised in an
    operator (the message carries its traceback) the exception line that ends it."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        raised = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
        if raised:
            return raised[-1]
    return lines[0]


def _path_problem(exc: OSError) -> str:
    """``input file not found: x`` (our own checks) or ``Not a directory: x`` (the OS's)."""
    if exc.filename is not None:
        return f"{exc.strerror or exc.__class__.__name__}: {exc.filename}"
    return str(exc.args[0]) if exc.args else str(exc)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        if args.reference or args.schema:
            from job.config_reference import json_schema, reference_markdown

            print(reference_markdown() if args.reference else json.dumps(json_schema(), indent=2))
            return 0
        print(yaml.safe_dump(to_plain(_load(args)), sort_keys=False), end="")
        return 0
    if args.command == "replay":
        return _cmd_replay(args)
    if args.command == "report":
        from job.report import run_command as run_report

        return run_report(args)
    if args.command == "tune":
        from job.tune import run_command as run_tune

        return run_tune(args, _load(args))
    if args.command == "eval":
        from tools.evaluation.evaluate import run_command as run_eval

        return run_eval(args, _load(args).detector, args.set)
    if args.command == "run":
        extra = []
        if args.input:
            extra += ["source.type=file", f"source.path={args.input}"]
        if args.out:
            extra.append(f"sink.dir={args.out}")
        cfg = _load(args, extra)
        t0 = time.monotonic()
        counts = cmd_run(cfg)
        if cfg.sink.type == "kafka":
            print(f"job ended or submitted after {time.monotonic() - t0:.1f} s; outputs in Kafka")
            return 0
        print(_summary(counts, Path(cfg.sink.dir), time.monotonic() - t0))
        return 0
    if args.command == "nab":
        from job.nab import run_nab_command

        return run_nab_command(args.nab_dir, args.out, _load(args), args.files, args.workers)
    if args.command == "demo":
        cfg = _load(args, ["source.type=demo", f"sink.dir={args.out}", "sink.emit_scores=true"])
        print(
            f"demo: writing a 3-day stream of 5 entities to {args.out}/input.jsonl and running the job on a local MiniCluster ..."
        )
        t0 = time.monotonic()
        counts = cmd_run(cfg, "anomaly-detection-demo")
        print(_summary(counts, Path(cfg.sink.dir), time.monotonic() - t0))
        from job.report import build_report

        res = build_report(cfg.sink.dir, Path(cfg.sink.dir) / "report", Path(cfg.sink.dir) / "input.jsonl")
        print(f"report           {res['index']}")
        return 0
    if args.command == "bench":
        from job.bench import main as bench_main

        return bench_main(args)
    raise AssertionError(args.command)


def _cmd_replay(args: argparse.Namespace) -> int:
    from job.io import CsvOptions, count_lines, input_metrics, read_records, write_replay

    cfg = _load(args)
    path = Path(args.input)
    csv_opts = None
    if path.suffix.lower() == ".csv":
        csv_opts = CsvOptions(
            ts_column=args.ts_column,
            entity_column=args.entity_column,
            entity=args.entity,
            metrics=tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else (),
        )
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    verdicts_path = cfg.source.verdicts_path
    if verdicts_path and not Path(verdicts_path).is_file():
        raise FileNotFoundError(f"verdicts file not found: {verdicts_path}")

    def records() -> Iterator[Any]:
        # The verdicts first: each waits for its entity to reach its ts, as in the job
        # (udfs.core.detector.EntityDetector.on_verdict).
        if verdicts_path:
            yield from read_records(verdicts_path, cfg.parse)
        yield from read_records(path, cfg.parse, csv_opts)

    t0 = time.monotonic()
    metrics = input_metrics(read_records(path, cfg.parse, csv_opts)) if args.emit_features else None
    counts = write_replay(
        records(),
        cfg.detector,
        args.out,
        emit_features=args.emit_features,
        total=count_lines(path),
        feature_metrics=metrics,
    )
    summary: dict[str, Any] = {
        "scored": counts["score"],
        "alert_records": counts["alert"],
        "dead_letters": counts["dead_letter"],
        "late": counts["late"],
        "seconds": round(time.monotonic() - t0, 2),
        "out": str(args.out),
    }
    print(json.dumps(summary))
    return 0
