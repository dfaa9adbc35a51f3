"""``python -m job dashboard-png``: a picture of the Grafana dashboard, drawn from its JSON.

Grafana does not run everywhere (it is not in Debian, and there is no Grafana here); this
draws the panels of ``ops/grafana/anomaly-dashboard.json`` the way Grafana lays them out
(its ``gridPos``), each query evaluated by a real Prometheus over a time range
(``/api/v1/query_range``) and plotted with matplotlib, legends from the queries'
``legendFormat``. It is a faithful picture of what the queries return, not of Grafana's
styling.

    python -m job dashboard-png --prometheus http://127.0.0.1:9090 --minutes 15 \\
        --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import UTC
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "draw the Grafana dashboard's panels from a real Prometheus into a PNG"
DASHBOARD = Path(__file__).resolve().parents[1] / "ops" / "grafana" / "anomaly-dashboard.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--dashboard", default=str(DASHBOARD))
    p.add_argument("--minutes", type=float, default=30.0, help="time range (default 30)")
    p.add_argument("--step", type=float, default=0.0, help="seconds (default: range / 240)")
    p.add_argument("--out", default="out/dashboard.png")


def _query_range(prom: str, expr: str, start: float, end: float, step: float) -> list[Any]:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=30) as r:
        out = json.loads(r.read())
    if out.get("status") != "success":
        raise SystemExit(f"error: Prometheus refused {expr!r}: {out.get('error')}")
    return list(out["data"]["result"])


def _legend(fmt: str, metric: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)[:48]


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    dash = json.loads(Path(args.dashboard).read_text())
    panels = dash["panels"]
    end = time.time()
    start = end - args.minutes * 60
    step = args.step or max(1.0, (end - start) / 240)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.42))
    fig.suptitle(f"{dash['title']}: the panels of {Path(args.dashboard).name}, queried on "
                 f"{args.prometheus} (UTC)", fontsize=13, y=0.985)
    grid = fig.add_gridspec(rows, 24, hspace=3.2, wspace=1.2, top=0.94, bottom=0.02)
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]: g["y"] + g["h"] - 1, g["x"]: g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=9, loc="left")
        for t in p["targets"]:
            for series in _query_range(args.prometheus, t["expr"], start, end, step):
                xs = [datetime.fromtimestamp(float(v[0]), tz=UTC) for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                ax.plot(xs, ys, linewidth=1.2,
                        label=_legend(t.get("legendFormat", ""), series["metric"]))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    print(f"dashboard-png: {len(panels)} panels -> {out}")
    return 0
