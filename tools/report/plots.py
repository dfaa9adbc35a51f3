"""The chart of one entity: a panel per metric and the score as rarity, drawn with matplotlib
on an Agg canvas (no pyplot, no global backend or figure state)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.report.inputs import Episode, Series, drift_ts, ts_ms

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

SEVERITY_COLORS = {"info": "#4C78A8", "warning": "#F58518", "critical": "#D62728"}
_DRIFT_COLOR = "#8E44AD"
_HEALTH_COLOR = "#8C564B"
_DAY_MS = 86_400_000
_MAX_METRIC_PANELS = 12

Points = tuple[list[int], list[float]]


def capped_note(scores_path: Path, cap: float) -> str:
    """The chart's note on rarities drawn at the cap of the score file."""
    if scores_path.suffix == ".csv":
        return f"▲ rarity ≥ {cap:.1f}: scores.csv rounds scores to 6 decimals"
    return f"▲ rarity ≥ {cap:.0f}"


def _rc() -> dict[RcKeyType, Any]:
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


def _drift_label(rec: dict[str, Any]) -> str:
    what = rec.get("statistic") or rec.get("check") or rec.get("type") or "drift"
    feature = rec.get("feature")
    return f"{feature} {what}" if feature else str(what)


def plot_entity(
    png: Path,
    entity: str,
    s: Series,
    metrics: dict[str, Points],
    episodes: list[Episode],
    drift: list[dict[str, Any]],
    late: list[dict[str, Any]],
    cap: float,
    capped_note: str,
) -> list[str]:
    """Draw one entity's chart into ``png``; return the metrics left out (too many)."""
    import matplotlib as mpl

    shown, omitted = _panels(metrics, episodes)
    x = _days(s.ts)
    t_end = max(s.ts[-1], max((ts_ms(r) for ep in episodes for r in ep.records), default=0))
    span_days = max((t_end - s.ts[0]) / _DAY_MS, 1e-6)
    late_pts = _late_points(late, shown)
    with mpl.rc_context(_rc()):
        fig, axs = _figure(len(shown))
        score_ax = axs[-1]
        for ax, name in zip(axs, shown, strict=False):
            _draw_metric(ax, name, metrics[name], late_pts.get(name), episodes)
        top, clipped = _draw_score(score_ax, x, s, cap)
        _draw_episodes(axs, score_ax, episodes, s.ts[-1], span_days, top)
        _draw_drift(axs, score_ax, dict(zip(shown, axs, strict=False)), drift)
        _draw_title(fig, entity, s, episodes, drift)
        _draw_legend(fig, drift, late_pts, shown)
        if capped_note and clipped:
            fig.text(
                0.99,
                1 - 0.14 / fig.get_figheight(),
                capped_note,
                ha="right",
                va="top",
                fontsize=8,
                color="#666666",
            )
        _finish(fig, score_ax, x[0], t_end, span_days)
        fig.savefig(png, format="png", metadata={"Software": None})
    return omitted


def _panels(metrics: dict[str, Points], episodes: list[Episode]) -> tuple[list[str], list[str]]:
    """The metrics charted and those left out: the ones the alerts name first, then the others."""
    named = {
        _metric_of(f.get("feature", ""))
        for ep in episodes
        for r in ep.records
        for f in r.get("features") or []
    }
    order = sorted(metrics, key=lambda m: (m not in named, m))
    return order[:_MAX_METRIC_PANELS], order[_MAX_METRIC_PANELS:]


def _late_points(late: list[dict[str, Any]], shown: list[str]) -> dict[str, Points]:
    """Per charted metric: (timestamps, values) of the late events."""
    late_pts: dict[str, Points] = defaultdict(lambda: ([], []))
    for rec in late:
        try:
            ev = json.loads(rec.get("event", "{}"))
        except json.JSONDecodeError:
            continue
        for name, v in (ev.get("metrics") or {}).items():
            if isinstance(v, int | float) and name in shown:
                late_pts[name][0].append(ts_ms(rec))
                late_pts[name][1].append(float(v))
    return late_pts


def _figure(n: int) -> tuple[Figure, list[Axes]]:
    """A figure on an Agg canvas with ``n`` metric panels and the score panel, x shared."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heights = [1.6] * n + [2.6]
    fig = Figure(figsize=(13, 1.4 + sum(heights)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        n + 1,
        1,
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    return fig, list(axes[:, 0])


def _draw_metric(
    ax: Axes, name: str, values: Points, late: Points | None, episodes: list[Episode]
) -> None:
    """One metric's panel: its values, its late events, and the value that explains each alert."""
    ts_list, vals = values
    ax.plot(*_gapped(_days(ts_list), vals), color="#333333", lw=0.7)
    ax.set_ylabel(name)
    if late and late[0]:
        ax.plot(_days(late[0]), late[1], "x", color="#2CA02C", ms=7, mew=1.8, zorder=5)
    for ep in episodes:
        op = ep.open
        feats = [f for f in op.get("features") or [] if _metric_of(f.get("feature", "")) == name]
        if not feats:
            continue
        f = feats[0]  # the strongest contributor of this metric
        try:
            actual, expected = float(f["actual"]), float(f["expected"])
        except (KeyError, TypeError, ValueError):
            continue
        t = ts_ms(op) / _DAY_MS
        color = SEVERITY_COLORS.get(op.get("severity", "info"), "#4C78A8")
        ax.plot([t, t], [expected, actual], ":", color=color, lw=1.2)
        ax.plot([t], [expected], "o", mfc="white", mec=color, ms=5)
        ax.plot([t], [actual], "o", color=color, ms=6)


def _draw_score(score_ax: Axes, x: Any, s: Series, cap: float) -> tuple[float, bool]:
    """The score panel: rarity, threshold, alerts, warm-up; return its top and whether any
    rarity reached the cap."""
    import numpy as np

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
    top = max(float(np.nanmax(r)) if len(r) else 0.0, float(np.nanmax(thr)) if len(thr) else 0.0)
    top = min(cap, top) + 0.6
    score_ax.set_ylim(0, top)
    score_ax.set_ylabel("rarity  −log10(1 − score)")
    sec = score_ax.secondary_yaxis("right")
    ticks = [k for k in range(1, int(top) + 1)]
    sec.set_yticks(ticks, labels=[f"{1 - 10.0**-k:.{k}f}" for k in ticks])
    sec.set_ylabel("anomaly score")
    sec.tick_params(labelsize=7)
    return top, bool(clipped.any())


def _draw_episodes(
    axs: list[Axes],
    score_ax: Axes,
    episodes: list[Episode],
    end_ms: int,
    span_days: float,
    top: float,
) -> None:
    """Alert episodes as spans over every panel, numbered as in the alert table."""
    min_w = span_days * 0.004  # an episode stays visible on a long axis
    for ep in episodes:
        for a, b, sev in ep.segments(end_ms):
            a_d, b_d = a / _DAY_MS, b / _DAY_MS
            if b_d - a_d < min_w:
                b_d = a_d + min_w
            for ax in axs:
                ax.axvspan(a_d, b_d, color=SEVERITY_COLORS.get(sev, "#4C78A8"), alpha=0.28, lw=0)
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


def _draw_drift(
    axs: list[Axes], score_ax: Axes, panel_of: dict[str, Axes], drift: list[dict[str, Any]]
) -> None:
    """Drift and health records as vertical lines over every panel, labelled on their
    feature's panel (the score panel for the others)."""
    panel_of["score"] = score_ax
    for rec in drift:
        ts = drift_ts(rec)
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


def _draw_title(
    fig: Figure, entity: str, s: Series, episodes: list[Episode], drift: list[dict[str, Any]]
) -> None:
    """The chart's title: the entity and its counts of events, episodes and drift records."""
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


def _draw_legend(
    fig: Figure, drift: list[dict[str, Any]], late_pts: dict[str, Points], shown: list[str]
) -> None:
    """The legend below the panels, with entries only for what the chart draws."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

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
            Line2D([], [], color="#2CA02C", marker="x", ls="", mew=1.8, label="late (not scored)")
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


def _finish(fig: Figure, score_ax: Axes, x0: float, t_end: int, span_days: float) -> None:
    """The time axis (from ``x0`` to ``t_end``, padded) and the figure's fixed margins."""
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
    score_ax.xaxis.set_major_locator(loc)
    score_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))  # type: ignore[no-untyped-call]
    score_ax.set_xlabel("event time (UTC)")
    pad = span_days * 0.005
    score_ax.set_xlim(x0 - pad, t_end / _DAY_MS + pad)
    # Fixed margins (in inches) rather than tight_layout: faster, and the same layout for
    # every entity, so the charts line up when scrolling.
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=0.8 / w, right=1 - 0.95 / w, bottom=1.2 / h, top=1 - 0.45 / h, hspace=0.16
    )
