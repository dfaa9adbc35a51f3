"""``python -m job tune``: what each alert threshold would give on a sample of your data.

The input is replayed through the detection core (:func:`udfs.core.replay.replay`, the same
code the Flink job runs) once per candidate value of the threshold knob in use: the fixed
threshold ``detector.threshold.rarity`` (decades; the default, ``--rarities``), or the
target alert rate ``detector.threshold.target_alert_rate`` when one is configured or
``--rates`` is given. Every other key comes from the profile, ``--config`` and ``--set`` as
for ``replay``. For each candidate the table shows:

- **opened**: alert episodes opened (``open`` records), all entities;
- **per entity / day**: episodes opened per entity per day of event time, the mean over the
  entities (those without alerts count as 0) and the worst entity. An entity's days run
  from its first to its last scored event, plus one median event interval (so 4,320
  one-minute events make 3.00 days);
- with labels, at the **episode level**: an episode is a true positive when it opens inside
  ``[start - slack, end]`` of an incident of the same entity, otherwise a false positive;
  ``precision = TP episodes / episodes``, ``recall = incidents with at least one TP episode
  / incidents``, F1 their harmonic mean, and the mean **delay** from incident start to its
  first TP episode (negative when the alert opened inside the slack, before the labelled
  start). The slack (default 10 minutes, ``--slack-minutes``) allows for labels drawn a
  little after the trouble began.

Labels: a JSON file ``[{"entity": "srv-2", "start": "2026-01-02T15:00:00Z", "end": ...}]``
(``start``/``end`` as ISO-8601 or epoch milliseconds, ``end`` inclusive), or ``--labels
demo`` for the incidents injected into the bundled demo stream
(:func:`job.demo_data.incidents`; ``end`` is the end of the incident's last minute).

Candidates run in parallel worker processes (``--workers``, default 2: the machine's cores
are the limit; each worker reads and replays the input on its own). ``--json FILE`` writes the
whole result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

from job.commands.replay import add_csv_arguments, csv_options

__all__ = [
    "DEFAULT_RARITIES",
    "DEFAULT_RATES",
    "add_arguments",
    "demo_labels",
    "format_table",
    "knob_in_use",
    "load_labels",
    "main",
    "run_command",
    "tune",
]

DEFAULT_RATES = (0.0001, 0.0005, 0.001, 0.005)
DEFAULT_RARITIES = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
DEFAULT_SLACK_MINUTES = 10.0
_DAY_MS = 86_400_000


# -- arguments ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``tune`` except the configuration ones (``--profile/--config/--set``)."""
    p.add_argument("--input", required=True, help="JSON-lines (.jsonl/.json) or CSV (.csv) file")
    p.add_argument(
        "--labels",
        help="incidents as JSON [{entity, start, end}] (ISO-8601 or epoch ms), or 'demo' for "
        "the demo stream's injected incidents",
    )
    p.add_argument(
        "--rarities",
        help="comma-separated fixed thresholds in decades (default: "
        + ",".join(f"{r:g}" for r in DEFAULT_RARITIES)
        + " and the configured one)",
    )
    p.add_argument(
        "--rates",
        help="comma-separated target alert rates, instead (default when a target rate is "
        "configured: " + ",".join(f"{r:g}" for r in DEFAULT_RATES) + " and the configured one)",
    )
    p.add_argument(
        "--slack-minutes",
        type=float,
        default=DEFAULT_SLACK_MINUTES,
        help="an episode opening this long before an incident's start still finds it "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--limit",
        type=int,
        help="replay only the first N input records (a quicker sample)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel worker processes, one candidate each at a time (default: %(default)s)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_csv_arguments(p)


# The knobs a sweep can turn: (flag, default candidates, open interval of valid values).
KNOBS = {
    "rarity": ("--rarities", DEFAULT_RARITIES, (0.0, 20.0), "1.5,2"),
    "target_alert_rate": ("--rates", DEFAULT_RATES, (0.0, 0.5), "0.0005,0.001"),
}


def knob_in_use(cfg: Any, rates: str | None = None, rarities: str | None = None) -> str:
    """The threshold key a sweep turns: the one asked for, else the one configured."""
    if rates is not None and rarities is not None:
        raise ValueError("give --rates or --rarities, not both")
    if rates is not None:
        return "target_alert_rate"
    if rarities is not None:
        return "rarity"
    return "target_alert_rate" if cfg.detector.threshold.target_alert_rate > 0 else "rarity"


def _parse_values(knob: str, text: str | None, configured: float) -> list[float]:
    flag, defaults, (lo, hi), example = KNOBS[knob]
    if text is None:
        values = set(defaults) | {configured}
    else:
        values = set()
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                r = float(part)
            except ValueError:
                raise ValueError(
                    f"{flag}: {part!r} is not a number (e.g. {flag} {example})"
                ) from None
            if not lo < r < hi:
                raise ValueError(f"{flag}: {part} is outside ({lo:g}, {hi:g})")
            values.add(r)
        if not values:
            raise ValueError(f"{flag} is empty (e.g. {flag} {example})")
    return sorted(values)


# -- labels -----------------------------------------------------------------------------------


def demo_labels() -> list[dict[str, Any]]:
    """The demo stream's incidents as labels (``end`` = end of the last incident minute)."""
    from job.demo_data import DEMO_START_MS, incidents
    from udfs.core.events import format_timestamp

    out = []
    for inc in incidents():
        start = DEMO_START_MS + inc["start_min"] * 60_000
        end = start + inc["minutes"] * 60_000
        out.append(
            {
                "entity": inc["entity"],
                "start": format_timestamp(start),
                "end": format_timestamp(end),
                "what": inc.get("what", ""),
            }
        )
    return out


def load_labels(spec: str) -> list[dict[str, Any]]:
    """Labels from a JSON file or ``demo``: ``[{entity, start_ms, end_ms, ...}]``, checked."""
    from udfs.core.events import parse_timestamp

    if spec == "demo":
        raw: Any = demo_labels()
        where = "demo labels"
    else:
        p = Path(spec)
        if not p.is_file():
            raise FileNotFoundError(f"labels file not found: {p}")
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"labels file {p} is not valid JSON: {exc}") from None
        where = str(p)
    if isinstance(raw, dict) and isinstance(raw.get("incidents"), list):
        raw = raw["incidents"]
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a JSON list of {{entity, start, end}} objects")
    labels = []
    problems = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            problems.append(f"[{i}]: expected an object, got {type(item).__name__}")
            continue
        entity = item.get("entity")
        start = parse_timestamp(item.get("start"))
        end = parse_timestamp(item.get("end"))
        if not isinstance(entity, str) or not entity:
            problems.append(f"[{i}].entity: missing or not a string")
        if start is None:
            problems.append(f"[{i}].start: not ISO-8601 or epoch ms: {item.get('start')!r}")
        if end is None:
            problems.append(f"[{i}].end: not ISO-8601 or epoch ms: {item.get('end')!r}")
        if start is not None and end is not None and end < start:
            problems.append(f"[{i}]: end is before start")
        if not problems:
            labels.append({**item, "entity": entity, "start_ms": start, "end_ms": end})
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return labels


# -- one candidate ----------------------------------------------------------------------------


def _replay_one(
    path: str, csv_opts: Any, parse_cfg: Any, detector_cfg: Any, limit: int | None
) -> dict[str, Any]:
    """Replay the input with one configuration; what tuning needs of the outputs."""
    from itertools import islice

    from job.io import read_records
    from udfs.core.replay import replay

    t0 = time.monotonic()
    records = read_records(path, parse_cfg, csv_opts)
    if limit is not None:
        records = islice(records, limit)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    prev: dict[str, int] = {}
    gaps: dict[str, list[int]] = {}
    scored: Counter[str] = Counter()
    opens: list[dict[str, Any]] = []
    dead = late = 0
    for kind, rec in replay(records, detector_cfg):
        if kind == "score":
            e, ts = rec["entity"], rec["ts_ms"]
            scored[e] += 1
            if e not in first:
                first[e] = ts
            else:
                g = gaps.setdefault(e, [])
                if len(g) < 10_000:
                    g.append(ts - prev[e])
            prev[e] = ts
            last[e] = ts
        elif kind == "alert":
            if rec["kind"] == "open":
                opens.append(
                    {
                        "alert_id": rec["alert_id"],
                        "entity": rec["entity"],
                        "ts_ms": rec["ts_ms"],
                        "ts": rec["ts"],
                        "severity": rec["severity"],
                    }
                )
        elif kind == "dead_letter":
            dead += 1
        elif kind == "late":
            late += 1
    days = {}
    for e in scored:
        step = median(gaps[e]) if gaps.get(e) else 0
        days[e] = (last[e] - first[e] + step) / _DAY_MS
    return {
        "scored": dict(scored),
        "days": days,
        "first_ms": min(first.values()) if first else None,
        "last_ms": max(last.values()) if last else None,
        "opens": sorted(opens, key=lambda a: (a["ts_ms"], a["entity"])),
        "dead_letters": dead,
        "late": late,
        "seconds": round(time.monotonic() - t0, 2),
    }


def _score_labels(
    opens: list[dict[str, Any]], labels: list[dict[str, Any]], slack_ms: int
) -> dict[str, Any]:
    """Episode-level precision, recall and F1 of ``opens`` against ``labels``."""
    tp = 0
    found: dict[int, dict[str, Any]] = {}
    for a in opens:
        hit = False
        for i, lab in enumerate(labels):
            if (
                a["entity"] == lab["entity"]
                and lab["start_ms"] - slack_ms <= a["ts_ms"] <= lab["end_ms"]
            ):
                hit = True
                if i not in found or a["ts_ms"] < found[i]["ts_ms"]:
                    found[i] = a
        tp += hit
    n = len(opens)
    precision = tp / n if n else 0.0
    recall = len(found) / len(labels) if labels else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    incidents = []
    delays = []
    for i, lab in enumerate(labels):
        first = found.get(i)
        delay = first["ts_ms"] - lab["start_ms"] if first else None
        if delay is not None:
            delays.append(delay)
        incidents.append(
            {
                "entity": lab["entity"],
                "start_ms": lab["start_ms"],
                "end_ms": lab["end_ms"],
                "found": first is not None,
                "first_alert_id": first["alert_id"] if first else None,
                "delay_ms": delay,
            }
        )
    return {
        "tp_episodes": tp,
        "fp_episodes": n - tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "incidents_found": len(found),
        "incidents": incidents,
        "mean_delay_ms": sum(delays) / len(delays) if delays else None,
    }


# -- the sweep --------------------------------------------------------------------------------


def tune(
    input_path: str | Path,
    cfg: Any,
    values: list[float] | tuple[float, ...] | None = None,
    labels: list[dict[str, Any]] | None = None,
    slack_minutes: float = DEFAULT_SLACK_MINUTES,
    csv_opts: Any = None,
    limit: int | None = None,
    workers: int = 2,
    knob: str | None = None,
) -> dict[str, Any]:
    """Replay ``input_path`` once per candidate value of ``detector.threshold.<knob>``; the
    results as a plain dict.

    ``cfg`` is a :class:`job.config.JobConfig`; ``knob`` is ``"rarity"`` or
    ``"target_alert_rate"`` (default: :func:`knob_in_use`), the only key that changes
    between candidates; sweeping rates on a configuration without one keeps its ``rarity``
    as their floor. ``labels`` come from :func:`load_labels`.
    """
    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    knob = knob or knob_in_use(cfg)
    configured = getattr(cfg.detector.threshold, knob)
    value_list = sorted(set(values)) if values else _parse_values(knob, None, configured)
    detectors = [
        replace(cfg.detector, threshold=replace(cfg.detector.threshold, **{knob: v}))
        for v in value_list
    ]
    jobs = [(str(path), csv_opts, cfg.parse, d, limit) for d in detectors]
    t0 = time.monotonic()
    workers = max(1, min(workers, len(jobs), os.cpu_count() or 1))
    raw = _replay_all(jobs, workers)
    slack_ms = int(round(slack_minutes * 60_000))
    base = raw[0]
    entities = sorted(base["scored"])
    results = [
        _row(knob, value, value == configured, r, entities, labels, slack_ms)
        for value, r in zip(value_list, raw, strict=True)
    ]
    unknown = sorted({lab["entity"] for lab in labels or []} - set(entities))
    return {
        "input": str(path),
        "events_scored": sum(base["scored"].values()),
        "entities": len(entities),
        "days": max(base["days"].values()) if base["days"] else 0.0,
        "first_ms": base["first_ms"],
        "last_ms": base["last_ms"],
        "dead_letters": base["dead_letters"],
        "late": base["late"],
        "limit": limit,
        "knob": knob,
        "configured_value": configured,
        "labels": [{k: v for k, v in lab.items() if k not in ("start", "end")} for lab in labels]
        if labels is not None
        else None,
        "labels_unknown_entities": unknown,
        "slack_ms": slack_ms,
        "workers": workers,
        "seconds": round(time.monotonic() - t0, 2),
        "rows": results,
    }


def _replay_all(jobs: list[tuple[Any, ...]], workers: int) -> list[dict[str, Any]]:
    """:func:`_replay_one` of each job, in order, over ``workers`` processes."""
    if workers == 1:
        return [_replay_one(*j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_replay_one, *j) for j in jobs]
        return [f.result() for f in futures]


def _row(
    knob: str, value: float, configured: bool, r: dict[str, Any], entities: list[str],
    labels: list[dict[str, Any]] | None, slack_ms: int,
) -> dict[str, Any]:
    """One candidate value's row: alerts opened, per entity and day, against the labels."""
    per_entity = Counter(a["entity"] for a in r["opens"])
    per_day = {e: per_entity.get(e, 0) / r["days"][e] for e in entities if r["days"][e] > 0}
    worst = max(sorted(per_day), key=lambda e: per_day[e]) if per_day else None
    row: dict[str, Any] = {
        knob: value,
        "configured": configured,
        "alerts_opened": len(r["opens"]),
        "by_severity": {
            s: sum(1 for a in r["opens"] if a["severity"] == s)
            for s in ("info", "warning", "critical")
        },
        "per_entity": {e: per_entity.get(e, 0) for e in entities},
        "per_entity_per_day_mean": (sum(per_day.values()) / len(per_day)) if per_day else 0.0,
        "per_entity_per_day_max": per_day[worst] if worst else 0.0,
        "per_entity_per_day_max_entity": worst,
        "opens": r["opens"],
        "seconds": r["seconds"],
    }
    if labels is not None:
        row.update(_score_labels(r["opens"], labels, slack_ms))
    return row


def format_table(res: dict[str, Any]) -> str:
    """The results as a fixed-width text table."""
    labelled = res["labels"] is not None
    head = (
        f"tune: {res['input']}: {res['events_scored']:,} events scored, "
        f"{res['entities']} entities, {res['days']:.2f} days"
        + (f" (first {res['limit']:,} records)" if res["limit"] else "")
    )
    if labelled:
        head += f"; {len(res['labels'])} labelled incidents, slack {res['slack_ms'] / 60_000:g} min"
    knob = res["knob"]
    cols = ["threshold" if knob == "rarity" else "target rate", "opened", "info/warn/crit", "per entity/day mean", "max"]
    if labelled:
        cols += ["TP", "FP", "precision", "recall", "F1", "found", "mean delay"]
    rows = []
    for r in res["rows"]:
        sev = r["by_severity"]
        worst = r["per_entity_per_day_max_entity"]
        row = [
            f"{r[knob]:g}" + (" *" if r["configured"] else ""),
            f"{r['alerts_opened']:,}",
            f"{sev['info']}/{sev['warning']}/{sev['critical']}",
            f"{r['per_entity_per_day_mean']:.2f}",
            f"{r['per_entity_per_day_max']:.2f}"
            + (f" ({worst})" if worst and r["per_entity_per_day_max"] > 0 else ""),
        ]
        if labelled:
            delay = r["mean_delay_ms"]
            row += [
                str(r["tp_episodes"]),
                str(r["fp_episodes"]),
                f"{r['precision']:.3f}",
                f"{r['recall']:.3f}",
                f"{r['f1']:.3f}",
                f"{r['incidents_found']}/{len(res['labels'])}",
                "-" if delay is None else f"{delay / 60_000:+.1f} min",
            ]
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [head, "", fmt(cols), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    lines.append("")
    lines.append(f"* the configured value (detector.threshold.{knob})")
    if labelled:
        lines.append(
            "TP/FP: episodes opening inside [start - slack, end] of an incident of their entity, "
            "or not; recall: incidents with >= 1 TP episode"
        )
        if res["labels_unknown_entities"]:
            lines.append(
                "warning: labelled entities not in the input: "
                + ", ".join(res["labels_unknown_entities"])
            )
    lines.append(f"took {res['seconds']:.1f} s ({res['workers']} worker(s))")
    return "\n".join(lines)


# -- command ----------------------------------------------------------------------------------


USES_CONFIG = True


def run(args: argparse.Namespace, cfg: Any) -> int:
    return run_command(args, cfg)


def run_command(args: argparse.Namespace, cfg: Any) -> int:
    """``python -m job tune`` with parsed ``args`` and the loaded :class:`JobConfig`."""
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    if not (args.slack_minutes >= 0 and math.isfinite(args.slack_minutes)):
        raise ValueError("--slack-minutes must be >= 0")
    knob = knob_in_use(cfg, args.rates, args.rarities)
    text = args.rates if knob == "target_alert_rate" else args.rarities
    values = _parse_values(knob, text, getattr(cfg.detector.threshold, knob))
    labels = load_labels(args.labels) if args.labels else None
    res = tune(
        path,
        cfg,
        values,
        labels,
        knob=knob,
        slack_minutes=args.slack_minutes,
        csv_opts=csv_options(args, path),
        limit=args.limit,
        workers=args.workers,
    )
    print(format_table(res))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
        print(f"json: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.tune``: the same as ``python -m job tune`` (one parser, one error path)."""
    from job.cli import main as cli_main

    return cli_main(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
