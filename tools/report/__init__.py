"""``python -m job report``: one self-contained HTML page of a run's outputs.

Reads a run folder written by ``replay`` or by the Flink job (``run``/``demo``):

- the scores: ``scores.csv`` (replay) or ``scores.jsonl`` (the job with
  ``sink.emit_scores=true``); when both are there, the newer one;
- ``alerts.jsonl``, and ``drift.jsonl``, ``dead_letter.jsonl``, ``late.jsonl`` when present;
- the input events, for the metric values: ``--input FILE`` or ``RUN/input.jsonl`` (the demo
  writes it there). Without them the charts show the scores only.

and writes ``OUT/index.html`` plus one ``OUT/<entity>.png`` per entity (the PNGs are also
inlined into the page as base64, so ``index.html`` alone can be mailed or attached to a
ticket; nothing is loaded from the network).

Each entity's chart has one panel per metric (the values over event time; late events,
which were not scored, as green crosses; for each alert, the value of the metric that
explains it, with the window mean it was compared with) and a panel of the anomaly score as
**rarity** ``-log10(1 - anomaly_score)`` (rarity 3 = score 0.999 = one event in a thousand),
with the entity's adaptive threshold on the same scale and the warm-up (no alerts possible)
shaded. Alert episodes are spans over every panel, coloured by severity (an escalation
changes the colour from that instant on), numbered as in the alert table. Records of
``drift.jsonl`` are vertical lines, dashed for drift and dotted for health (``type``), at
their ``ts`` or else at the end of their ``current`` window, and listed in a table.

Deterministic: the same inputs give the same bytes (the Agg backend, matplotlib's bundled
DejaVu Sans, no timestamps in the PNG metadata or the page).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tools.report.inputs import (
    MetricValues,
    ReportError,
    Run,
    input_file,
    metric_values,
    rarity_cap,
    read_run,
)
from tools.report.page import entity_section, file_stem, render_page
from tools.report.plots import capped_note, plot_entity

__all__ = ["ReportError", "add_arguments", "build_report", "main", "run_command"]


# -- arguments ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``report``."""
    p.add_argument("--run", required=True, help="the run's output folder (replay --out, run --out)")
    p.add_argument("--out", required=True, help="folder for index.html and <entity>.png")
    p.add_argument(
        "--input",
        help="the events, for metric values: JSON lines, or CSV with the options below "
        "(default: RUN/input.jsonl when present)",
    )
    p.add_argument(
        "--entity",
        action="extend",
        nargs="+",
        default=[],
        metavar="E",
        help="only these entities (repeatable); default: all, up to --max-entities",
    )
    p.add_argument(
        "--max-entities",
        type=int,
        default=50,
        help="chart at most this many entities, those with the most alerts first "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--ts-column",
        default="timestamp",
        help="CSV input: timestamp column (default: %(default)s)",
    )
    p.add_argument("--entity-column", help="CSV input: entity column")
    p.add_argument(
        "--csv-entity",
        help="CSV input: one entity name for the whole file (default: the run's only entity)",
    )


# -- the report -------------------------------------------------------------------------------


def build_report(
    run_dir: str | Path,
    out_dir: str | Path,
    input_path: str | Path | None = None,
    entities: list[str] | tuple[str, ...] = (),
    max_entities: int = 50,
    csv_opts: Any = None,
) -> dict[str, Any]:
    """Write ``out_dir/index.html`` and ``out_dir/<entity>.png``; return a summary dict."""
    t0 = time.monotonic()
    run = read_run(Path(run_dir))
    cap = rarity_cap(run.scores_path)
    chosen = _chosen_entities(run, entities, max_entities)
    inp = input_file(run.path, input_path)
    metrics, input_stats = metric_values(inp, csv_opts, run, chosen)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    stems = {e: file_stem(e, taken) for e in chosen}
    pngs, sections = _charts(run, out, stems, metrics, cap)
    (out / "index.html").write_text(render_page(run, stems, inp, input_stats, sections, cap))
    return {
        "index": str(out / "index.html"),
        "pngs": {e: str(p) for e, p in pngs.items()},
        "entities": len(run.series),
        "charted": len(chosen),
        "events": run.events,
        "alerts": len(run.episodes),
        "seconds": round(time.monotonic() - t0, 2),
    }


def _chosen_entities(
    run: Run, entities: list[str] | tuple[str, ...], max_entities: int
) -> list[str]:
    """The entities to chart: ``entities`` without repeats, else those with the most alerts."""
    all_entities = sorted(run.series)
    if entities:
        unknown = [e for e in entities if e not in run.series]
        if unknown:
            raise ReportError(
                f"entity not in {run.scores_path.name}: {', '.join(unknown)} "
                f"(known: {', '.join(all_entities[:20])}{' ...' if len(all_entities) > 20 else ''})"
            )
        return list(dict.fromkeys(entities))
    n_alerts = Counter(ep.entity for ep in run.episodes)
    chosen = sorted(all_entities, key=lambda e: (-n_alerts.get(e, 0), e))[: max(max_entities, 0)]
    chosen.sort()
    return chosen


def _charts(
    run: Run, out: Path, stems: dict[str, str], metrics: MetricValues, cap: float
) -> tuple[dict[str, Path], list[str]]:
    """Draw each entity of ``stems`` into ``out/<stem>.png``; return the files and the sections."""
    note = capped_note(run.scores_path, cap)
    pngs: dict[str, Path] = {}
    sections = []
    for e, stem in stems.items():
        png = out / f"{stem}.png"
        omitted = plot_entity(
            png,
            e,
            run.series[e],
            metrics.get(e, {}),
            run.episodes_by_entity.get(e, []),
            run.drift_by_entity.get(e, []),
            run.late_by_entity.get(e, []),
            cap,
            note,
        )
        pngs[e] = png
        sections.append(entity_section(e, stem, run, omitted, png.read_bytes()))
    return pngs, sections


# -- command ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """``python -m job report`` with parsed ``args``."""
    from job.io import CsvOptions

    if args.max_entities < 1:
        raise ReportError("--max-entities must be >= 1")
    csv_opts = None
    if args.input and Path(args.input).suffix.lower() == ".csv":
        csv_opts = CsvOptions(
            ts_column=args.ts_column, entity_column=args.entity_column, entity=args.csv_entity
        )
    res = build_report(
        args.run,
        args.out,
        input_path=args.input,
        entities=args.entity,
        max_entities=args.max_entities,
        csv_opts=csv_opts,
    )
    print(
        f"report: {res['index']} ({res['charted']} of {res['entities']} entities charted, "
        f"{res['events']:,} events, {res['alerts']} alert episodes, {res['seconds']:.1f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.report``: the same as ``python -m job report`` (one parser, one error path)."""
    from job.cli import main as cli_main

    return cli_main(["report", *(sys.argv[1:] if argv is None else argv)])
