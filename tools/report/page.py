"""The HTML page: its style sheet, the formatting of values, its summary, tables and sections."""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tools.report.inputs import Episode, Run, drift_ts, ts_ms

_SEVERITIES = ("info", "warning", "critical")

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


# -- values -----------------------------------------------------------------------------------


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


def file_stem(entity: str, taken: set[str]) -> str:
    """A file name for ``entity``'s chart, unique (case-insensitively) among ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", entity).strip(".") or "entity"
    if stem != entity or stem.lower() in taken:
        stem = f"{stem[:80]}-{hashlib.sha256(entity.encode()).hexdigest()[:8]}"
    taken.add(stem.lower())
    return stem


# -- alerts and drift -------------------------------------------------------------------------


def _features_html(features: list[dict[str, Any]]) -> str:
    if not features:
        return '<span class="muted">none</span>'
    rows = ["<tr><th>feature</th><th>actual</th><th>expected</th><th>z</th></tr>"]
    for f in features:
        z: Any = f.get("z")
        try:
            z_s = f"{float(z):+.2f}"
        except (TypeError, ValueError):
            z_s = _e(z)
        rows.append(
            f"<tr><td><code>{_e(f.get('feature', ''))}</code></td><td class=n>{_num(f.get('actual'))}</td>"
            f"<td class=n>{_num(f.get('expected'))}</td><td class=n>{z_s}</td></tr>"
        )
    return '<table class="f">' + "".join(rows) + "</table>"


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
                f"{_e(_fmt_ts(ts_ms(res)))}<div class=muted>{_duration(ts_ms(res) - start)}</div>"
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
                f'<div class="muted">at escalation ({_e(_fmt_ts(ts_ms(peak_rec)))}):</div>'
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


def _alert_table(episodes: list[Episode], anchors: dict[str, str], cap: float) -> str:
    """The table of alert episodes, one row each, or a line saying there are none."""
    return (
        "<table><thead><tr><th>#</th><th>entity</th><th>severity</th><th>opened (UTC)</th>"
        "<th>resolved</th><th>direction</th><th>rarity / threshold<br><span class=muted>score</span></th>"
        "<th>explanation (top features at opening)</th><th>links</th><th>alert id · records</th></tr></thead>"
        f"<tbody>{_alert_rows(episodes, anchors, cap)}</tbody></table>"
        if episodes
        else '<p class="muted">No alerts.</p>'
    )


def _span(d: dict[str, Any]) -> str:
    a, b = d.get("from_ts"), d.get("to_ts")
    if not isinstance(a, int) or not isinstance(b, int):
        return ""
    return f"{_fmt_ts(a)} → {_fmt_ts(b)} ({d.get('events', '?')} events)"


def _drift_table(drift: list[dict[str, Any]]) -> str:
    """The section of drift and health records in time order; empty without records."""
    if not drift:
        return ""
    rows = []
    for rec in sorted(drift, key=lambda r: (drift_ts(r) or 0, str(r.get("entity", "")))):
        ts = drift_ts(rec)
        ref, cur = rec.get("reference") or {}, rec.get("current") or {}
        rows.append(
            f"<tr><td>{_e(rec.get('entity', ''))}</td><td>{_e(_fmt_ts(ts)) if ts else ''}</td>"
            f"<td>{_e(rec.get('type', 'drift'))}</td><td><code>{_e(rec.get('feature', ''))}</code></td>"
            f"<td>{_e(rec.get('statistic') or rec.get('check') or '')}</td>"
            f"<td class=n>{_num(rec.get('value'))}</td><td class=n>{_num(rec.get('threshold'))}</td>"
            f"<td>{_e(rec.get('action', ''))}</td><td>{_e(_span(ref))}</td><td>{_e(_span(cur))}</td></tr>"
        )
    return (
        "<h2>Drift and health</h2><table><thead><tr><th>entity</th><th>time (UTC)</th>"
        "<th>type</th><th>feature</th><th>statistic / check</th><th>value</th>"
        "<th>threshold</th><th>action</th><th>reference</th><th>current</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# -- summary ----------------------------------------------------------------------------------


def _chips(c: Counter[str]) -> str:
    return " ".join(f'<span class="sev {s}">{s} {c.get(s, 0)}</span>' for s in _SEVERITIES)


def _cards(
    run: Run, chosen: list[str], inp: Path | None, input_stats: dict[str, int]
) -> list[tuple[str, str, str]]:
    """The summary cards: (title, value, details as HTML)."""
    series, episodes, drift, dead, late = run.series, run.episodes, run.drift, run.dead, run.late
    t_first = min(s.ts[0] for s in series.values())
    t_last = max(s.ts[-1] for s in series.values())
    peak = Counter(ep.peak for ep in episodes)
    opened_sev = Counter(ep.open.get("severity", "info") for ep in episodes)
    escalated = sum(1 for ep in episodes if any(r.get("kind") == "escalate" for r in ep.records))
    dead_reasons = Counter(str(d.get("reason", "?")) for d in dead)
    late_ents = Counter(str(x.get("entity", "?")) for x in late)
    ent_alerted = sorted({ep.entity for ep in episodes})
    cards = [
        ("events scored", f"{run.events:,}", f"{_e(_fmt_ts(t_first))} → {_e(_fmt_ts(t_last))} UTC"),
        (
            "entities",
            f"{len(series):,}",
            f"{len(ent_alerted)} with alerts"
            + (f"; {len(chosen)} charted" if len(chosen) < len(series) else ""),
        ),
        (
            "alerts opened",
            f"{len(episodes):,}",
            f"by highest severity: {_chips(peak)}<br>at opening: "
            + ", ".join(f"{s} {opened_sev.get(s, 0)}" for s in _SEVERITIES)
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
            else (
                "none in drift.jsonl" if (run.path / "drift.jsonl").is_file() else "no drift.jsonl"
            ),
        ),
    ]
    if input_stats:
        cards.append(
            ("input events", f"{input_stats.get('events', 0):,}", _e(inp.name if inp else ""))
        )
    return cards


def _entity_rows(run: Run, anchors: dict[str, str]) -> str:
    """The rows of the entity table: every entity, charted or not."""
    late_ents = Counter(str(x.get("entity", "?")) for x in run.late)
    rows = []
    for e in sorted(run.series):
        s = run.series[e]
        eps = run.episodes_by_entity.get(e, [])
        c = Counter(ep.peak for ep in eps)
        name = f'<a href="#{_e(anchors[e])}">{_e(e)}</a>' if e in anchors else _e(e)
        rows.append(
            f"<tr><td>{name}</td><td class=n>{len(s.ts):,}</td><td class=n>{len(eps)}</td>"
            + "".join(f"<td class=n>{c.get(sev, 0)}</td>" for sev in _SEVERITIES)
            + f"<td class=n>{late_ents.get(e, 0)}</td><td class=n>{len(run.drift_by_entity.get(e, []))}</td>"
            f"<td>{_e(_fmt_ts(s.ts[0]))} → {_e(_fmt_ts(s.ts[-1]))}</td></tr>"
        )
    return "".join(rows)


def _notes(run: Run, inp: Path | None) -> str:
    """Notes on what the page cannot show: metric values without input, alerts without file."""
    notes = []
    if inp is None:
        notes.append(
            "Metric values are not charted: no input events (pass <code>--input FILE</code>, "
            "or keep <code>input.jsonl</code> in the run folder)."
        )
    if not (run.path / "alerts.jsonl").is_file():
        notes.append("No <code>alerts.jsonl</code> in the run folder: no alerts shown.")
    return "".join(f'<p class="note">{n}</p>' for n in notes)


# -- the page ---------------------------------------------------------------------------------


def entity_section(entity: str, stem: str, run: Run, omitted: list[str], png: bytes) -> str:
    """One entity's section: its counts, links to its alerts, and its chart inlined."""
    data = base64.b64encode(png).decode("ascii")
    eps = run.episodes_by_entity.get(entity, [])
    refs = ", ".join(f'<a href="#alert-{_e(ep.alert_id)}">#{ep.number}</a>' for ep in eps)
    note = ""
    if omitted:
        note = (
            f'<p class="note">{len(omitted)} more metrics not charted: {_e(", ".join(omitted))}</p>'
        )
    return (
        f'<section class="ent" id="entity-{_e(stem)}"><h2>{_e(entity)}</h2>'
        f'<p class="sub">{len(run.series[entity].ts):,} events scored · alerts: {refs or "none"} · '
        f'<a href="{_e(stem)}.png">{_e(stem)}.png</a></p>{note}'
        f'<img alt="{_e(entity)}: metrics, rarity and threshold, alerts" '
        f'src="data:image/png;base64,{data}"></section>'
    )


def render_page(
    run: Run,
    stems: dict[str, str],
    inp: Path | None,
    input_stats: dict[str, int],
    sections: list[str],
    cap: float,
) -> str:
    """The whole of ``index.html``; ``stems`` names the charted entities' files, in order."""
    chosen = list(stems)
    cards_html = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in _cards(run, chosen, inp, input_stats)
    )
    anchors = {e: f"entity-{stems[e]}" for e in chosen}
    entity_rows = _entity_rows(run, anchors)
    notes_html = _notes(run, inp)
    alert_table = _alert_table(run.episodes, anchors, cap)
    drift_table = _drift_table(run.drift)
    events_from = f" · events from <code>{_e(inp)}</code>" if inp else ""
    path = run.path
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anomaly report: {_e(path.name or path)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Anomaly report</h1>
<div class="sub">run <code>{_e(path)}</code> · scores from <code>{_e(run.scores_path.name)}</code>{events_from}</div>
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
