"""Command line: ``python -m job COMMAND ...``.

Every command is one module registered in :data:`COMMANDS` the same way: the job's own
(``job/commands/``) and the offline tools (``tools/``). A command module has ``SUMMARY``,
``add_arguments(parser)`` and ``run(args)``, or ``run(args, cfg)`` with ``USES_CONFIG`` (the
CLI then adds ``--profile/--config/--set`` and loads the configuration, with the module's
``overrides(args)`` if it has one). Only the command asked for is imported.

Every error a user can cause ends with one line saying what is wrong and what to do, and a
non-zero exit code; no stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from types import ModuleType
from typing import NamedTuple

from job.config import ConfigError, JobConfig, load_config

__all__ = ["COMMANDS", "main"]


class Command(NamedTuple):
    module: str
    summary: str


#: Every command, in the order of ``python -m job --help``.
COMMANDS: dict[str, Command] = {
    "run": Command("job.commands.run", "run the Flink job (local MiniCluster unless submitted with `flink run`)"),
    "demo": Command("tools.demo", "write the demo stream, run the Flink job on it, print a summary and write a report"),
    "replay": Command("job.commands.replay", "run the same detection core in plain Python over a file (the oracle)"),
    "forward-alerts": Command("job.commands.forward_alerts", "send the job's committed alerts from Kafka to Alertmanager (v2 API), idempotently by alert_id"),
    "config": Command("job.commands.config", "print the effective configuration, or the reference of every key"),
    "eval": Command("tools.evaluation.evaluate", "detection quality on NAB, ASD and SKAB with one configuration"),
    "nab": Command("tools.evaluation.nab", "run the detection core over the Numenta Anomaly Benchmark and score it"),
    "report": Command("tools.report", "write an HTML report (charts, alerts and their explanations) of a run's outputs"),
    "tune": Command("tools.tune", "replay a sample once per threshold: alerts per entity per day, precision / recall"),
    "train-model": Command("tools.train_model", "fit an Isolation Forest or One-Class SVM per entity on history; write an artifact the job scores"),
    "train-filter": Command("tools.train_filter", "train the false-positive alert filter from alerts and operator verdicts"),
    "bench": Command("tools.bench.run", "measure throughput, latency and state size: the job vs the plain loop vs a naive baseline"),
    "dashboard-png": Command("tools.dashboard_png", "draw the Grafana dashboard's panels from a real Prometheus into a PNG"),
    "upgrade-check": Command("tools.upgrade_check", "check that a savepoint of an older revision restores in this one, through Flink"),
}

_CONFIG_HELP = """\
configuration:
  --profile NAME      a profile from job/profiles/ (default: default)
  --config FILE       a YAML file applied over the profile
  --set KEY=VALUE     override one key, repeatable; VALUE is YAML
                      e.g. --set detector.threshold.rarity=2.0
                           --set execution.mode=process --set sink.dir=out/x
  `python -m job config --reference` lists every key with its type, default and description.
"""


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items())
    return (
        "usage: python -m job COMMAND [options]\n\n"
        "Real-time per-entity anomaly detection on Apache Flink (PyFlink).\n\n"
        f"commands:\n{rows}\n\n`python -m job COMMAND --help` for a command's options.\n\n"
        + _CONFIG_HELP
    )


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", default="default", help="profile in job/profiles/ (default: %(default)s)"
    )
    p.add_argument("--config", help="YAML configuration file applied over the profile")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key (repeatable)"
    )


def parser_for(name: str, module: ModuleType) -> argparse.ArgumentParser:
    """The argument parser of command ``name``."""
    doc = (module.__doc__ or "").strip()
    p = argparse.ArgumentParser(
        prog=f"python -m job {name}",
        description=doc.split("\n\n")[0] if doc else COMMANDS[name].summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_CONFIG_HELP if getattr(module, "USES_CONFIG", False) else None,
    )
    module.add_arguments(p)
    if getattr(module, "USES_CONFIG", False):
        _add_config_args(p)
    return p


def _dispatch(name: str, argv: list[str]) -> int:
    module = importlib.import_module(COMMANDS[name].module)
    args = parser_for(name, module).parse_args(argv)
    if not getattr(module, "USES_CONFIG", False):
        return int(module.run(args))
    extra = module.overrides(args) if hasattr(module, "overrides") else []
    cfg: JobConfig = load_config(args.config, [*extra, *args.set], profile=args.profile)
    return int(module.run(args, cfg))


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if not args_list or args_list[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0 if args_list else 2
    name, rest = args_list[0], args_list[1:]
    if name not in COMMANDS:
        print(_usage(), end="", file=sys.stderr)
        print(f"error: unknown command {name!r}", file=sys.stderr)
        return 2
    try:
        return _dispatch(name, rest)
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


