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
import base64
import csv
import hashlib
import html
import json
import math
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReportError", "add_arguments", "build_report", "main", "run_command"]

SEVERITY_COLORS = {"info": "#4C78A8", "warning": "#F58518", "critical": "#D62728"}
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_DRIFT_COLOR = "#8E44AD"
_HEALTH_COLOR = "#8C564B"
_DAY_MS = 86_400_000
_MAX_METRIC_PANELS = 12
# Rarity shown at most this high when the score file rounds (scores.csv has 6 decimals, so
# 1.000000 only says 1 - score < 5e-7).
_CSV_RARITY_CAP = -math.log10(5e-7)
_JSONL_RARITY_CAP = 12.0


class ReportError(ValueError):
    """A problem the user can fix (printed as one line by the CLI, exit code 2)."""


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


# -- reading the run --------------------------------------------------------------------------


@dataclass
class Series:
    """One entity's scored events, in timestamp order."""

    ts: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    is_alert: list[bool] = field(default_factory=list)
    ready: list[bool] = field(default_factory=list)


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    return str(v).strip().lower() in ("1", "true", "yes")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _scores_file(run: Path) -> Path:
    cands = [p for p in (run / "scores.csv", run / "scores.jsonl") if p.is_file()]
    if not cands:
        inp = run / "input.jsonl" if (run / "input.jsonl").is_file() else "FILE"
        raise ReportError(
            f"no scores in {run} (neither scores.csv nor scores.jsonl): run "
            f"`python -m job replay --input {inp} --out {run}` first (or the Flink job with "
            "`--set sink.emit_scores=true`)"
        )
    # Both present: a replay and a job wrote into the same folder; the newer one is the run.
    return max(cands, key=lambda p: (p.stat().st_mtime_ns, p.suffix == ".jsonl"))


def _read_scores(path: Path) -> dict[str, Series]:
    from udfs.core.events import parse_timestamp

    series: dict[str, Series] = {}

    def add(entity: str, ts: int | None, rec: dict[str, Any]) -> None:
        if ts is None:
            raise ReportError(f"{path}: bad timestamp in a score of {entity!r}")
        s = series.get(entity)
        if s is None:
            s = series[entity] = Series()
        s.ts.append(ts)
        s.score.append(float(rec["anomaly_score"]))
        s.threshold.append(float(rec["threshold"]))
        s.is_alert.append(_flag(rec["is_alert"]))
        s.ready.append(_flag(rec["ready"]))

    try:
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                need = {"entity", "timestamp", "anomaly_score", "threshold", "is_alert", "ready"}
                missing = need - set(reader.fieldnames or [])
                if missing:
                    raise ReportError(f"{path}: missing columns {', '.join(sorted(missing))}")
                for row in reader:
                    add(row["entity"], parse_timestamp(row["timestamp"]), row)
        else:
            for rec in _read_jsonl(path):
                add(str(rec["entity"]), parse_timestamp(rec.get("ts_ms", rec.get("ts"))), rec)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError(f"{path}: not a score file of this job ({exc})") from None
    for s in series.values():
        if any(b < a for a, b in zip(s.ts, s.ts[1:], strict=False)):
            order = sorted(range(len(s.ts)), key=s.ts.__getitem__)
            for name in ("ts", "score", "threshold", "is_alert", "ready"):
                vals = getattr(s, name)
                setattr(s, name, [vals[i] for i in order])
    return series


def _read_metrics(
    path: Path,
    late: list[dict[str, Any]],
    csv_opts: Any,
    entities: set[str],
) -> tuple[dict[str, dict[str, tuple[list[int], list[float]]]], dict[str, int]]:
    """Per entity, per metric: (timestamps, values) of the events that were scored.

    Late events (listed in ``late.jsonl``) are left out here; the charts draw them apart.
    """
    from job.io import read_records
    from udfs.core.events import Event, ParseConfig

    late_left = Counter(str(rec.get("event", "")) for rec in late)
    per: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    stats = Counter[str]()
    try:
        for rec in read_records(path, ParseConfig(), csv_opts):
            if not isinstance(rec, Event):
                continue
            stats["events"] += 1
            if rec.entity not in entities:
                continue
            if late_left:
                key = rec.to_json()
                if late_left.get(key):
                    late_left[key] -= 1
                    continue
            m = per.setdefault(rec.entity, {})
            for name, v in rec.metrics.items():
                ts_list, vals = m.setdefault(name, ([], []))
                ts_list.append(rec.ts_ms)
                vals.append(v)
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a text file of events") from None
    for m in per.values():
        for name, (ts_list, vals) in list(m.items()):
            if any(b < a for a, b in zip(ts_list, ts_list[1:], strict=False)):
                pairs = sorted(zip(ts_list, vals, strict=True))
                m[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return per, dict(stats)


# -- episodes -------------------------------------------------------------------------------


@dataclass
class Episode:
    """The records of one alert episode (one ``alert_id``)."""

    alert_id: str
    entity: str
    start_ms: int
    records: list[dict[str, Any]]
    number: int = 0

    @property
    def open(self) -> dict[str, Any]:
        for r in self.records:
            if r.get("kind") == "open":
                return r
        return self.records[0]

    @property
    def resolved(self) -> dict[str, Any] | None:
        for r in self.records:
            if r.get("kind") == "resolved":
                return r
        return None

    @property
    def peak(self) -> str:
        sev = [r.get("severity", "info") for r in self.records if r.get("kind") != "resolved"]
        return max(sev or ["info"], key=lambda s: _SEVERITY_RANK.get(s, 0))

    def segments(self, end_ms: int) -> list[tuple[int, int, str]]:
        """(from, to, severity): the severity in force over the episode's life."""
        marks = [
            (_ts_ms(r), r.get("severity", "info"))
            for r in self.records
            if r.get("kind") in ("open", "escalate")
        ]
        stop = _ts_ms(self.resolved) if self.resolved else end_ms
        out = []
        for i, (t, sev) in enumerate(marks):
            t_next = marks[i + 1][0] if i + 1 < len(marks) else stop
            out.append((t, max(t_next, t), sev))
        return out


def _ts_ms(rec: dict[str, Any]) -> int:
    from udfs.core.events import parse_timestamp

    v = rec.get("ts_ms")
    if isinstance(v, int):
        return v
    ts = parse_timestamp(rec.get("ts"))
    if ts is None:
        raise ReportError(f"a record without a usable ts: {json.dumps(rec)[:200]}")
    return ts


def _drift_ts(rec: dict[str, Any]) -> int | None:
    """When a drift or health record was raised: its ``ts_ms``/``ts``, else the end of its
    ``current`` span (the records of :mod:`udfs.core.drift` carry their windows)."""
    from udfs.core.events import parse_timestamp

    for v in (rec.get("ts_ms"), rec.get("ts"), (rec.get("current") or {}).get("to_ts")):
        if v is not None:
            ts = parse_timestamp(v)
            if ts is not None:
                return ts
    return None


def _drift_label(rec: dict[str, Any]) -> str:
    what = rec.get("statistic") or rec.get("check") or rec.get("type") or "drift"
    feature = rec.get("feature")
    return f"{feature} {what}" if feature else str(what)


def _episodes(alerts: list[dict[str, Any]]) -> list[Episode]:
    from udfs.core.events import parse_timestamp

    by_id: dict[str, Episode] = {}
    for rec in alerts:
        aid = str(rec.get("alert_id", ""))
        ep = by_id.get(aid)
        if ep is None:
            start = parse_timestamp(rec.get("start_ts"))
            by_id[aid] = ep = Episode(
                aid, str(rec.get("entity", "")), start if start is not None else _ts_ms(rec), []
            )
        ep.records.append(rec)
    kind_order = {"open": 0, "escalate": 1, "resolved": 2}
    eps = sorted(by_id.values(), key=lambda e: (e.start_ms, e.entity, e.alert_id))
    for n, ep in enumerate(eps, 1):
        ep.number = n
        ep.records.sort(key=lambda r: (_ts_ms(r), kind_order.get(r.get("kind", ""), 3)))
    return eps


# -- charts -----------------------------------------------------------------------------------


def _rc() -> dict[str, Any]:
    return {
        "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs everywhere
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "legend.fontsize": 8,
        "legend.frameon": False,
        "timezone": "UTC",
        "date.epoch": "1970-01-01T00:00:00",
        "savefig.dpi": 100,
        "path.simplify": True,
        "agg.path.chunksize": 20000,
    }


def _days(ts: list[int]) -> Any:
    import numpy as np

    return np.asarray(ts, dtype=np.float64) / _DAY_MS  # matplotlib date numbers (epoch 1970)


def _gapped(x: Any, y: Any) -> tuple[Any, Any]:
    """``x``, ``y`` with a NaN inserted after each gap longer than 5 typical intervals (and
    at least 10 minutes), so that a line is broken where data is missing, not bridged."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return x, y
    dx = np.diff(x)
    limit = max(5 * float(np.median(dx)), 600_000 / _DAY_MS)
    cut = np.flatnonzero(dx > limit) + 1
    if not len(cut):
        return x, y
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


def _rarity(scores: list[float], cap: float) -> Any:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    tail = np.clip(1.0 - s, 10.0**-cap, 1.0)
    return -np.log10(tail)


def _metric_of(feature: str) -> str:
    return feature.split(".", 1)[0]


def _plot_entity(
    png: Path,
    entity: str,
    s: Series,
    metrics: dict[str, tuple[list[int], list[float]]],
    episodes: list[Episode],
    drift: list[dict[str, Any]],
    late: list[dict[str, Any]],
    cap: float,
    capped_note: str,
) -> list[str]:
    """Draw one entity's chart into ``png``; return the metrics left out (too many)."""
    # The object-oriented API on an Agg canvas: no pyplot, no global backend or figure state.
    import matplotlib as mpl
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # Metrics named by the entity's alerts first, then the others, alphabetically.
    named = {
        _metric_of(f.get("feature", ""))
        for ep in episodes
        for r in ep.records
        for f in r.get("features") or []
    }
    order = sorted(metrics, key=lambda m: (m not in named, m))
    shown, omitted = order[:_MAX_METRIC_PANELS], order[_MAX_METRIC_PANELS:]

    x = _days(s.ts)
    t_end = max(s.ts[-1], max((_ts_ms(r) for ep in episodes for r in ep.records), default=0))
    span_days = max((t_end - s.ts[0]) / _DAY_MS, 1e-6)
    min_w = span_days * 0.004  # an episode stays visible on a long axis

    late_pts: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for rec in late:
        try:
            ev = json.loads(rec.get("event", "{}"))
        except json.JSONDecodeError:
            continue
        for name, v in (ev.get("metrics") or {}).items():
            if isinstance(v, int | float) and name in shown:
                late_pts[name][0].append(_ts_ms(rec))
                late_pts[name][1].append(float(v))

    n = len(shown)
    heights = [1.6] * n + [2.6]
    with mpl.rc_context(_rc()):
        fig = Figure(figsize=(13, 1.4 + sum(heights)))
        FigureCanvasAgg(fig)
        axes = fig.subplots(
            n + 1,
            1,
            sharex=True,
            gridspec_kw={"height_ratios": heights},
            squeeze=False,
        )
        axs = list(axes[:, 0])
        score_ax = axs[-1]

        for ax, name in zip(axs, shown, strict=False):
            ts_list, vals = metrics[name]
            ax.plot(*_gapped(_days(ts_list), vals), color="#333333", lw=0.7)
            ax.set_ylabel(name)
            lp = late_pts.get(name)
            if lp and lp[0]:
                ax.plot(_days(lp[0]), lp[1], "x", color="#2CA02C", ms=7, mew=1.8, zorder=5)
            for ep in episodes:
                op = ep.open
                feats = [
                    f for f in op.get("features") or [] if _metric_of(f.get("feature", "")) == name
                ]
                if not feats:
                    continue
                f = feats[0]  # the strongest contributor of this metric
                try:
                    actual, expected = float(f["actual"]), float(f["expected"])
                except (KeyError, TypeError, ValueError):
                    continue
                t = _ts_ms(op) / _DAY_MS
                color = SEVERITY_COLORS.get(op.get("severity", "info"), "#4C78A8")
                ax.plot([t, t], [expected, actual], ":", color=color, lw=1.2)
                ax.plot([t], [expected], "o", mfc="white", mec=color, ms=5)
                ax.plot([t], [actual], "o", color=color, ms=6)

        r = _rarity(s.score, cap)
        thr = _rarity(s.threshold, cap)
        ready = np.asarray(s.ready, dtype=bool)
        alert = np.asarray(s.is_alert, dtype=bool)
        score_ax.plot(*_gapped(x, r), color="#555555", lw=0.6)
        score_ax.step(x, thr, where="post", color="black", lw=1.0, ls="--")
        if alert.any():
            score_ax.plot(x[alert], r[alert], "o", color="#D62728", ms=3)
        clipped = r >= cap - 1e-9
        if clipped.any():
            score_ax.plot(x[clipped], r[clipped], "^", color="#D62728", ms=5)
        # Warm-up: contiguous runs of not-ready events.
        if (~ready).any():
            edges = np.flatnonzero(np.diff(np.concatenate(([0], (~ready).astype(np.int8), [0]))))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                score_ax.axvspan(x[a], x[min(b, len(x) - 1)], color="#BBBBBB", alpha=0.35, lw=0)
        top = max(
            float(np.nanmax(r)) if len(r) else 0.0, float(np.nanmax(thr)) if len(thr) else 0.0
        )
        top = min(cap, top) + 0.6
        score_ax.set_ylim(0, top)
        score_ax.set_ylabel("rarity  −log10(1 − score)")
        sec = score_ax.secondary_yaxis("right")
        ticks = [k for k in range(1, int(top) + 1)]
        sec.set_yticks(ticks, labels=[f"{1 - 10.0**-k:.{k}f}" for k in ticks])
        sec.set_ylabel("anomaly score")
        sec.tick_params(labelsize=7)

        # Alert episodes over every panel; numbers as in the alert table.
        for ep in episodes:
            for a, b, sev in ep.segments(s.ts[-1]):
                a_d, b_d = a / _DAY_MS, b / _DAY_MS
                if b_d - a_d < min_w:
                    b_d = a_d + min_w
                for ax in axs:
                    ax.axvspan(
                        a_d, b_d, color=SEVERITY_COLORS.get(sev, "#4C78A8"), alpha=0.28, lw=0
                    )
        placed: list[float] = []
        for ep in episodes:
            t = ep.start_ms / _DAY_MS
            level = sum(1 for p in placed if abs(p - t) < span_days * 0.02)
            placed.append(t)
            score_ax.annotate(
                f"#{ep.number}",
                xy=(t, top),
                xytext=(0, -10 - 10 * (level % 3)),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                fontweight="bold",
                color=SEVERITY_COLORS.get(ep.peak, "#4C78A8"),
            )
        panel_of = dict(zip(shown, axs, strict=False))
        panel_of["score"] = score_ax
        for rec in drift:
            ts = _drift_ts(rec)
            if ts is None:
                continue
            t = ts / _DAY_MS
            health = rec.get("type") == "health"
            color, ls = (_HEALTH_COLOR, ":") if health else (_DRIFT_COLOR, "--")
            for ax in axs:
                ax.axvline(t, color=color, ls=ls, lw=1.0)
            target = panel_of.get(str(rec.get("feature")), score_ax)
            target.annotate(
                _drift_label(rec),
                xy=(t, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, 3),
                textcoords="offset points",
                rotation=90,
                fontsize=7,
                color=color,
                va="bottom",
                bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 1},
            )

        n_alerts = len(episodes)
        fig.text(
            0.01,
            1 - 0.12 / fig.get_figheight(),
            f"{entity}: {len(s.ts):,} events scored, {n_alerts} alert episode"
            + ("" if n_alerts == 1 else "s")
            + (
                f", {len(drift)} drift/health record" + ("" if len(drift) == 1 else "s")
                if drift
                else ""
            ),
            ha="left",
            va="top",
            fontsize=11,
            fontweight="bold",
        )
        handles: list[Any] = [
            Line2D([], [], color="black", ls="--", label="adaptive threshold"),
            Line2D([], [], color="#D62728", marker="o", ls="", ms=4, label="anomalous event"),
            Patch(color="#BBBBBB", alpha=0.5, label="warming up (no alerts)"),
        ]
        handles += [
            Patch(color=c, alpha=0.4, label=f"episode: {sev}") for sev, c in SEVERITY_COLORS.items()
        ]
        if any(r.get("type") != "health" for r in drift):
            handles.append(Line2D([], [], color=_DRIFT_COLOR, ls="--", label="drift"))
        if any(r.get("type") == "health" for r in drift):
            handles.append(Line2D([], [], color=_HEALTH_COLOR, ls=":", label="health check"))
        if any(lp[0] for lp in late_pts.values()):
            handles.append(
                Line2D(
                    [], [], color="#2CA02C", marker="x", ls="", mew=1.8, label="late (not scored)"
                )
            )
        if shown:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#444444",
                    marker="o",
                    ls=":",
                    ms=4,
                    label="alert: value (●) vs window mean (○)",
                )
            )
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=math.ceil(len(handles) / 2),
            bbox_to_anchor=(0.5, 0.0),
            columnspacing=1.6,
        )
        if capped_note and clipped.any():
            fig.text(
                0.99,
                1 - 0.14 / fig.get_figheight(),
                capped_note,
                ha="right",
                va="top",
                fontsize=8,
                color="#666666",
            )

        loc = mdates.AutoDateLocator(minticks=6, maxticks=14)
        score_ax.xaxis.set_major_locator(loc)
        score_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        score_ax.set_xlabel("event time (UTC)")
        pad = span_days * 0.005
        score_ax.set_xlim(x[0] - pad, t_end / _DAY_MS + pad)
        # Fixed margins (in inches) rather than tight_layout: faster, and the same layout for
        # every entity, so the charts line up when scrolling.
        w, h = fig.get_size_inches()
        fig.subplots_adjust(
            left=0.8 / w, right=1 - 0.95 / w, bottom=1.2 / h, top=1 - 0.45 / h, hspace=0.16
        )
        fig.savefig(png, format="png", metadata={"Software": None})
    return omitted


# -- page -------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1360px;margin:0 auto;padding:18px 24px 48px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#666;font-size:13px}.sub code{font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px 14px;min-width:130px}
.card .v{font-size:24px;font-weight:600}.card .k{color:#666;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .d{color:#555;font-size:12px;margin-top:2px}
table{border-collapse:collapse;background:#fff;border:1px solid #e1e4e8;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #eceef1;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.f{border:0;width:auto;font-size:12px;background:transparent}
table.f td,table.f th{border:0;padding:1px 8px 1px 0;background:transparent}
.sev{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px;font-weight:600}
.sev.info{background:#4C78A8}.sev.warning{background:#F58518}.sev.critical{background:#D62728}
code,.id{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
.muted{color:#777}.ent img{width:100%;height:auto;background:#fff;border:1px solid #e1e4e8;border-radius:6px}
.note{background:#fff8e1;border:1px solid #f0d98a;border-radius:6px;padding:6px 10px;font-size:13px}
a{color:#1f5fbf}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return _e(v)
    if not math.isfinite(x):
        return _e(x)
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:,.4g}" if abs(x) >= 1000 else f"{x:.4g}"


def _safe_url(u: Any) -> str | None:
    if isinstance(u, str) and re.match(r"^https?://", u):
        return u
    return None


def _fmt_ts(ms: int) -> str:
    from udfs.core.events import format_timestamp

    return format_timestamp(ms)[:19].replace("T", " ")


def _duration(ms: int) -> str:
    m = ms / 60_000
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def _rarity_of(score: Any, cap: float) -> str:
    try:
        s = float(score)
    except (TypeError, ValueError):
        return ""
    tail = 1.0 - s
    if tail <= 10.0**-cap:
        return f"≥{cap:.2f}"
    return f"{-math.log10(min(tail, 1.0)):.2f}"


def _features_html(features: list[dict[str, Any]]) -> str:
    if not features:
        return '<span class="muted">none</span>'
    rows = ["<tr><th>feature</th><th>actual</th><th>expected</th><th>z</th></tr>"]
    for f in features:
        z = f.get("z")
        try:
            z_s = f"{float(z):+.2f}"
        except (TypeError, ValueError):
            z_s = _e(z)
        rows.append(
            f"<tr><td><code>{_e(f.get('feature', ''))}</code></td><td class=n>{_num(f.get('actual'))}</td>"
            f"<td class=n>{_num(f.get('expected'))}</td><td class=n>{z_s}</td></tr>"
        )
    return '<table class="f">' + "".join(rows) + "</table>"


def _file_stem(entity: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", entity).strip(".") or "entity"
    if stem != entity or stem.lower() in taken:
        stem = f"{stem[:80]}-{hashlib.sha256(entity.encode()).hexdigest()[:8]}"
    taken.add(stem.lower())
    return stem


def _alert_rows(episodes: list[Episode], anchors: dict[str, str], cap: float) -> str:
    out = []
    for ep in episodes:
        op = ep.open
        res = ep.resolved
        kinds = [r.get("kind") for r in ep.records]
        sevs = [
            r.get("severity", "info") for r in ep.records if r.get("kind") in ("open", "escalate")
        ]
        sev_html = " → ".join(f'<span class="sev {_e(s)}">{_e(s)}</span>' for s in sevs) or ""
        if op.get("suppressed_before"):
            sev_html += f'<div class="muted">{_e(op["suppressed_before"])} suppressed before</div>'
        start = ep.start_ms
        if res is not None:
            end_html = (
                f"{_e(_fmt_ts(_ts_ms(res)))}<div class=muted>{_duration(_ts_ms(res) - start)}</div>"
            )
        else:
            end_html = '<span class="muted">still open at the end</span>'
        peak_rec = op
        for r in ep.records:
            if r.get("kind") == "escalate":
                peak_rec = r
        expl = _features_html(op.get("features") or [])
        if peak_rec is not op:
            expl += (
                f'<div class="muted">at escalation ({_e(_fmt_ts(_ts_ms(peak_rec)))}):</div>'
                + _features_html(peak_rec.get("features") or [])
            )
        links = []
        for label, key in (("runbook", "runbook_url"), ("dashboard", "dashboard_url")):
            u = _safe_url(op.get(key))
            if u:
                links.append(f'<a href="{_e(u)}" rel="noopener noreferrer">{label}</a>')
        anchor = anchors.get(ep.entity)
        ent = f'<a href="#{_e(anchor)}">{_e(ep.entity)}</a>' if anchor else _e(ep.entity)
        out.append(
            f'<tr id="alert-{_e(ep.alert_id)}"><td class=n>#{ep.number}</td><td>{ent}</td>'
            f"<td>{sev_html}</td><td>{_e(_fmt_ts(start))}</td><td>{end_html}</td>"
            f"<td>{_e(op.get('direction', ''))}</td>"
            f"<td class=n>{_e(_rarity_of(op.get('score'), cap))} / {_e(_rarity_of(op.get('threshold'), cap))}"
            f"<div class=muted>{_e(op.get('score', ''))}</div></td>"
            f"<td>{expl}</td><td>{'<br>'.join(links)}</td>"
            f'<td><span class="id">{_e(ep.alert_id)}</span><div class=muted>{_e(", ".join(str(k) for k in kinds))}</div></td></tr>'
        )
    return "".join(out)


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
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(
            f"run folder not found: {run}: run `python -m job replay --input FILE --out {run}` "
            f"(or `python -m job demo --out {run}`) first"
        )
    scores_path = _scores_file(run)
    series = _read_scores(scores_path)
    if not series:
        raise ReportError(f"{scores_path} holds no scores: was the input empty?")
    cap = _CSV_RARITY_CAP if scores_path.suffix == ".csv" else _JSONL_RARITY_CAP
    capped_note = (
        f"▲ rarity ≥ {cap:.1f}: scores.csv rounds scores to 6 decimals"
        if scores_path.suffix == ".csv"
        else f"▲ rarity ≥ {cap:.0f}"
    )
    alerts = _read_jsonl(run / "alerts.jsonl")
    drift = _read_jsonl(run / "drift.jsonl")
    dead = _read_jsonl(run / "dead_letter.jsonl")
    late = _read_jsonl(run / "late.jsonl")
    episodes = _episodes(alerts)

    all_entities = sorted(series)
    if entities:
        unknown = [e for e in entities if e not in series]
        if unknown:
            raise ReportError(
                f"entity not in {scores_path.name}: {', '.join(unknown)} "
                f"(known: {', '.join(all_entities[:20])}{' ...' if len(all_entities) > 20 else ''})"
            )
        chosen = list(dict.fromkeys(entities))
    else:
        n_alerts = Counter(ep.entity for ep in episodes)
        chosen = sorted(all_entities, key=lambda e: (-n_alerts.get(e, 0), e))[
            : max(max_entities, 0)
        ]
        chosen.sort()

    inp: Path | None = Path(input_path) if input_path else None
    if inp is not None and not inp.is_file():
        raise FileNotFoundError(f"input file not found: {inp}")
    if inp is None and (run / "input.jsonl").is_file():
        inp = run / "input.jsonl"
    metrics: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    input_stats: dict[str, int] = {}
    if inp is not None:
        if inp.suffix.lower() == ".csv" and csv_opts is None:
            from job.io import CsvOptions

            csv_opts = CsvOptions()
        if inp.suffix.lower() == ".csv" and not (csv_opts.entity_column or csv_opts.entity):
            if len(all_entities) != 1:
                raise ReportError("CSV input: pass --entity-column COLUMN or --csv-entity NAME")
            from dataclasses import replace

            csv_opts = replace(csv_opts, entity=all_entities[0])
        metrics, input_stats = _read_metrics(inp, late, csv_opts, set(chosen))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    stems = {e: _file_stem(e, taken) for e in chosen}
    eps_by_entity: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        eps_by_entity[ep.entity].append(ep)
    drift_by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in drift:
        drift_by_entity[str(rec.get("entity", ""))].append(rec)
    late_by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in late:
        late_by_entity[str(rec.get("entity", ""))].append(rec)

    sections = []
    pngs = {}
    for e in chosen:
        png = out / f"{stems[e]}.png"
        omitted = _plot_entity(
            png,
            e,
            series[e],
            metrics.get(e, {}),
            eps_by_entity.get(e, []),
            drift_by_entity.get(e, []),
            late_by_entity.get(e, []),
            cap,
            capped_note,
        )
        pngs[e] = png
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        eps = eps_by_entity.get(e, [])
        refs = ", ".join(f'<a href="#alert-{_e(ep.alert_id)}">#{ep.number}</a>' for ep in eps)
        note = ""
        if omitted:
            note = f'<p class="note">{len(omitted)} more metrics not charted: {_e(", ".join(omitted))}</p>'
        sections.append(
            f'<section class="ent" id="entity-{_e(stems[e])}"><h2>{_e(e)}</h2>'
            f'<p class="sub">{len(series[e].ts):,} events scored · alerts: {refs or "none"} · '
            f'<a href="{_e(stems[e])}.png">{_e(stems[e])}.png</a></p>{note}'
            f'<img alt="{_e(e)}: metrics, rarity and threshold, alerts" '
            f'src="data:image/png;base64,{data}"></section>'
        )

    # Summary.
    events = sum(len(s.ts) for s in series.values())
    t_first = min(s.ts[0] for s in series.values())
    t_last = max(s.ts[-1] for s in series.values())
    peak = Counter(ep.peak for ep in episodes)
    opened_sev = Counter(ep.open.get("severity", "info") for ep in episodes)
    escalated = sum(1 for ep in episodes if any(r.get("kind") == "escalate" for r in ep.records))
    dead_reasons = Counter(str(d.get("reason", "?")) for d in dead)
    late_ents = Counter(str(x.get("entity", "?")) for x in late)
    ent_alerted = sorted({ep.entity for ep in episodes})

    def chips(c: Counter[str]) -> str:
        return " ".join(
            f'<span class="sev {s}">{s} {c.get(s, 0)}</span>'
            for s in ("info", "warning", "critical")
        )

    cards = [
        ("events scored", f"{events:,}", f"{_e(_fmt_ts(t_first))} → {_e(_fmt_ts(t_last))} UTC"),
        (
            "entities",
            f"{len(series):,}",
            f"{len(ent_alerted)} with alerts"
            + (f"; {len(chosen)} charted" if len(chosen) < len(series) else ""),
        ),
        (
            "alerts opened",
            f"{len(episodes):,}",
            f"by highest severity: {chips(peak)}<br>at opening: "
            + ", ".join(f"{s} {opened_sev.get(s, 0)}" for s in ("info", "warning", "critical"))
            + f"; {escalated} escalated",
        ),
        (
            "dead letters",
            f"{len(dead):,}",
            _e(", ".join(f"{k} {v}" for k, v in sorted(dead_reasons.items()))) or "none",
        ),
        (
            "late events",
            f"{len(late):,}",
            _e(", ".join(f"{k} {v}" for k, v in sorted(late_ents.items()))) or "none",
        ),
        (
            "drift records",
            f"{len(drift):,}",
            (
                f"drift {sum(1 for r in drift if r.get('type') != 'health')}, "
                f"health {sum(1 for r in drift if r.get('type') == 'health')}"
            )
            if drift
            else ("none in drift.jsonl" if (run / "drift.jsonl").is_file() else "no drift.jsonl"),
        ),
    ]
    if input_stats:
        cards.append(
            ("input events", f"{input_stats.get('events', 0):,}", _e(inp.name if inp else ""))
        )
    cards_html = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in cards
    )
    anchors = {e: f"entity-{stems[e]}" for e in chosen}
    ent_rows = []
    for e in all_entities:
        eps = eps_by_entity.get(e, [])
        c = Counter(ep.peak for ep in eps)
        name = f'<a href="#{_e(anchors[e])}">{_e(e)}</a>' if e in anchors else _e(e)
        ent_rows.append(
            f"<tr><td>{name}</td><td class=n>{len(series[e].ts):,}</td><td class=n>{len(eps)}</td>"
            + "".join(f"<td class=n>{c.get(s, 0)}</td>" for s in ("info", "warning", "critical"))
            + f"<td class=n>{late_ents.get(e, 0)}</td><td class=n>{len(drift_by_entity.get(e, []))}</td>"
            f"<td>{_e(_fmt_ts(series[e].ts[0]))} → {_e(_fmt_ts(series[e].ts[-1]))}</td></tr>"
        )
    notes = []
    if inp is None:
        notes.append(
            "Metric values are not charted: no input events (pass <code>--input FILE</code>, "
            "or keep <code>input.jsonl</code> in the run folder)."
        )
    if not (run / "alerts.jsonl").is_file():
        notes.append("No <code>alerts.jsonl</code> in the run folder: no alerts shown.")
    notes_html = "".join(f'<p class="note">{n}</p>' for n in notes)
    alert_table = (
        "<table><thead><tr><th>#</th><th>entity</th><th>severity</th><th>opened (UTC)</th>"
        "<th>resolved</th><th>direction</th><th>rarity / threshold<br><span class=muted>score</span></th>"
        "<th>explanation (top features at opening)</th><th>links</th><th>alert id · records</th></tr></thead>"
        f"<tbody>{_alert_rows(episodes, anchors, cap)}</tbody></table>"
        if episodes
        else '<p class="muted">No alerts.</p>'
    )
    drift_table = ""
    if drift:
        rows = []
        for rec in sorted(drift, key=lambda r: (_drift_ts(r) or 0, str(r.get("entity", "")))):
            ts = _drift_ts(rec)
            ref, cur = rec.get("reference") or {}, rec.get("current") or {}

            def span(d: dict[str, Any]) -> str:
                a, b = d.get("from_ts"), d.get("to_ts")
                if not isinstance(a, int) or not isinstance(b, int):
                    return ""
                return f"{_fmt_ts(a)} → {_fmt_ts(b)} ({d.get('events', '?')} events)"

            rows.append(
                f"<tr><td>{_e(rec.get('entity', ''))}</td><td>{_e(_fmt_ts(ts)) if ts else ''}</td>"
                f"<td>{_e(rec.get('type', 'drift'))}</td><td><code>{_e(rec.get('feature', ''))}</code></td>"
                f"<td>{_e(rec.get('statistic') or rec.get('check') or '')}</td>"
                f"<td class=n>{_num(rec.get('value'))}</td><td class=n>{_num(rec.get('threshold'))}</td>"
                f"<td>{_e(rec.get('action', ''))}</td><td>{_e(span(ref))}</td><td>{_e(span(cur))}</td></tr>"
            )
        drift_table = (
            "<h2>Drift and health</h2><table><thead><tr><th>entity</th><th>time (UTC)</th>"
            "<th>type</th><th>feature</th><th>statistic / check</th><th>value</th>"
            "<th>threshold</th><th>action</th><th>reference</th><th>current</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    events_from = f" · events from <code>{_e(inp)}</code>" if inp else ""
    entity_rows = "".join(ent_rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anomaly report: {_e(run.name or run)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Anomaly report</h1>
<div class="sub">run <code>{_e(run)}</code> · scores from <code>{_e(scores_path.name)}</code>{events_from}</div>
{notes_html}
<div class="cards">{cards_html}</div>
<h2>Alerts</h2>
<p class="sub">One row per episode, in order of opening; the numbers mark the episodes on the charts.
Rarity is <code>−log10(1 − anomaly_score)</code>: 3 means one event in a thousand. Features are
<code>metric.window.stat</code>; <em>expected</em> is the window mean the value was compared with,
<em>z</em> how many (floored) standard deviations away it is.</p>
{alert_table}
{drift_table}
<h2>Entities</h2>
<table><thead><tr><th>entity</th><th>events</th><th>alerts</th><th>info</th><th>warning</th><th>critical</th>
<th>late</th><th>drift</th><th>time range (UTC)</th></tr></thead><tbody>{entity_rows}</tbody></table>
<p class="sub">Info / warning / critical: the entity's episodes by the highest severity they
reached. Each chart: one panel per metric (late events as green crosses; for each alert, the
value of the metric that explains it ● and the window mean it was compared with ○), then the
score as rarity with the entity's adaptive threshold (dashed) and the warm-up shaded grey.
Episodes are spans coloured by severity (info blue, warning orange, critical red); drift
records are dashed purple lines, health records dotted brown.</p>
{"".join(sections)}
</main></body></html>
"""
    (out / "index.html").write_text(page)
    return {
        "index": str(out / "index.html"),
        "pngs": {e: str(p) for e, p in pngs.items()},
        "entities": len(series),
        "charted": len(chosen),
        "events": events,
        "alerts": len(episodes),
        "seconds": round(time.monotonic() - t0, 2),
    }


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


if __name__ == "__main__":
    sys.exit(main())
