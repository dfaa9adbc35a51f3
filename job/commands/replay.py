"""``python -m job replay``: the detection core in plain Python over a file (the oracle)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from job.config import JobConfig

__all__ = ["add_arguments", "add_csv_arguments", "csv_options", "run"]

USES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="JSON-lines (.jsonl/.json) or CSV (.csv) file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--emit-features", action="store_true", help="add one column per feature to scores.csv"
    )
    add_csv_arguments(p)


def add_csv_arguments(p: argparse.ArgumentParser) -> None:
    """The CSV options (``--ts-column``, ``--entity-column``, ``--entity``, ``--metrics``),
    for every command that reads an input file."""
    p.add_argument(
        "--ts-column", default="timestamp", help="CSV: timestamp column (default: %(default)s)"
    )
    p.add_argument("--entity-column", help="CSV: entity column")
    p.add_argument("--entity", help="CSV: one entity name for the whole file")
    p.add_argument(
        "--metrics", help="CSV: comma-separated metric columns (default: all other columns)"
    )


def csv_options(args: argparse.Namespace, path: Path) -> Any:
    """:class:`job.io.CsvOptions` for a ``.csv`` input, ``None`` for JSON lines."""
    from job.io import CsvOptions

    if path.suffix.lower() != ".csv":
        return None
    return CsvOptions(
        ts_column=args.ts_column,
        entity_column=args.entity_column,
        entity=args.entity,
        metrics=tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else (),
    )


def run(args: argparse.Namespace, cfg: JobConfig) -> int:
    from job.io import count_lines, input_metrics, read_records, write_replay

    path = Path(args.input)
    csv_opts = csv_options(args, path)
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
