"""``python -m job eval``: the detection core on three labelled benchmarks, one configuration.

Runs NAB, ASD and SKAB (:mod:`tools.evaluation.datasets`) through the pure detection core
(the replay's detector; the Flink job gives the same records) with the configuration given
(the defaults unless ``--set``), one process per series on the machine's cores, and writes
``<out>/<date>.json`` and ``.md``:

- **NAB**: the normalised NAB score of each profile, with NAB's threshold sweep on
  ``anomaly_score`` and with the detector's own alerts (rows with an ``open`` or
  ``escalate`` record), scored with NAB's rules (:mod:`tools.evaluation.nab_scoring`);
- **ASD, SKAB**: on the scored rows, ROC AUC, PR AUC and VUS-PR (:mod:`tools.evaluation.metrics`)
  of the rarity (``anomaly_score`` in decades), pooled over the rows of every series and
  as the mean over series; alert-level recall (anomaly windows in which an alert opens),
  precision (openings inside a window) and the median delay from a window's start to its
  first opening; false alert episodes per day on SKAB's anomaly-free run;
- **drift and health records** per entity per day on the stretches without a labelled
  anomaly (what an operator would read as noise);
- with ``--ablation`` (the default of a full run), the same without each model of the
  ensemble in turn, and with each known model it leaves out added (:func:`variants`):
  what each model contributes.

``--quick``: NAB only on a fixed quarter of its files (every fourth, by name), ASD and SKAB
whole, no ablation: a few minutes. A full run of the defaults into ``eval/results`` rewrites
the detection-quality table of the README (between ``<!-- eval:start -->`` and
``<!-- eval:end -->``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tools.evaluation.datasets import Series, load_asd, load_nab, load_skab
from tools.evaluation.metrics import alert_quality, pr_auc, roc_auc, vus_pr
from tools.evaluation.runner import EntityRun, run_entity
from udfs.core.config import MODEL_NAMES, DetectorConfig

__all__ = ["evaluate", "main"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
README = ROOT / "README.md"
VUS_WINDOW = 100  # rows of buffer around each range (TSB-AD's default)
NAB_PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _progress(done: int, total: int, label: str, start: float, enabled: bool) -> None:
    if not enabled:
        return
    if not sys.stderr.isatty():  # a log: the end of each benchmark only
        if done == total:
            sys.stderr.write(f"{label:<10} {total} series in {time.monotonic() - start:.0f} s\n")
        return
    width = 30
    fill = int(width * done / total) if total else width
    sys.stderr.write(
        f"\r{label:<10} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}  {time.monotonic() - start:5.0f} s"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _run_one(args: tuple[Series, DetectorConfig]) -> EntityRun:
    series, cfg = args
    return run_entity(series.name, series.events, cfg)


def run_series(
    series: list[Series], cfg: DetectorConfig, workers: int, label: str, progress: bool
) -> dict[str, EntityRun]:
    """Every series through a fresh detector, largest first across ``workers`` processes."""
    ordered = sorted(series, key=lambda s: -len(s.events) * max(1, len(_metrics(s))))
    start = time.monotonic()
    runs: dict[str, EntityRun] = {}
    _progress(0, len(ordered), label, start, progress)
    jobs = [(s, cfg) for s in ordered]
    if workers <= 1:
        for job in jobs:
            run = _run_one(job)
            runs[run.name] = run
            _progress(len(runs), len(jobs), label, start, progress)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for run in pool.map(_run_one, jobs):
                runs[run.name] = run
                _progress(len(runs), len(jobs), label, start, progress)
    return runs


def _metrics(s: Series) -> list[str]:
    first = next((e for e in s.events if e is not None), None)
    return [] if first is None else list(first.metrics)


# -- metrics of one benchmark -------------------------------------------------------------


def _time_ms(s: Series) -> np.ndarray:
    return np.array([e.ts_ms if e is not None else 0 for e in s.events], dtype=np.int64)


def _outside_days(s: Series) -> float:
    """Days of the series' scored rows outside labelled anomalies (gaps counted once)."""
    ts = _time_ms(s)[s.scored_from :]
    if len(ts) < 2:
        return 0.0
    steps = np.diff(ts)
    normal = np.ones(len(ts), dtype=bool) if s.labels is None else s.labels[s.scored_from :] == 0
    step = float(np.median(steps))
    return float(np.minimum(steps, 10 * step)[normal[1:]].sum()) / 86_400_000


def _records_per_day(series: list[Series], runs: dict[str, EntityRun]) -> dict[str, Any]:
    """Drift and health records dated in scored rows outside labelled anomalies, per entity
    per day of those stretches, in total and by check."""
    by_check: Counter[str] = Counter()
    days = 0.0
    for s in series:
        run = runs[s.name]
        ts = _time_ms(s)
        lo = ts[s.scored_from] if s.scored_from < len(ts) else ts[-1]
        hi = int(ts.max())  # (records dated after the last event: the end of the input)
        days += _outside_days(s)
        inside = []
        if s.labels is not None:
            from tools.evaluation.metrics import anomaly_ranges

            inside = [(ts[a], ts[b]) for a, b in anomaly_ranges(s.labels)]
        for t, kind, check in run.drift:
            if t < lo or t > hi or any(a <= t <= b for a, b in inside):
                continue
            by_check[f"{kind}:{check}"] += 1
    total = sum(by_check.values())
    return {
        "entity_days": round(days, 2),
        "records": total,
        "per_entity_day": round(total / days, 3) if days else None,
        "by_check": dict(sorted(by_check.items())),
    }


def labelled_metrics(series: list[Series], runs: dict[str, EntityRun]) -> dict[str, Any]:
    """ROC AUC, PR AUC, VUS-PR, alert quality and delays over the scored rows."""
    labelled = [s for s in series if s.labels is not None and s.labels[s.scored_from :].any()]
    per: dict[str, dict[str, float]] = {}
    pooled_y, pooled_s = [], []
    windows = caught = episodes = inside = 0
    delays_ms: list[float] = []
    for s in labelled:
        run = runs[s.name]
        y = s.labels[s.scored_from :]  # type: ignore[index]
        score = run.rarity[s.scored_from :]
        pooled_y.append(y)
        pooled_s.append(score)
        per[s.name] = {
            "roc_auc": round(roc_auc(y, score), 4),
            "pr_auc": round(pr_auc(y, score), 4),
            "vus_pr": round(vus_pr(y, score, window=VUS_WINDOW), 4),
        }
        q = alert_quality(y, run.opened[s.scored_from :])
        windows += q.windows
        caught += q.windows_caught
        episodes += q.episodes
        inside += q.episodes_inside
        ts = _time_ms(s)[s.scored_from :]
        from tools.evaluation.metrics import anomaly_ranges

        starts = [a for a, _ in anomaly_ranges(y)]
        opens = np.flatnonzero(run.opened[s.scored_from :])
        for a, b in anomaly_ranges(y):
            hit = opens[(opens >= a) & (opens <= b)]
            if len(hit):
                delays_ms.append(float(ts[hit[0]] - ts[a]))
        del starts
    y_all = np.concatenate(pooled_y) if pooled_y else np.zeros(0)
    s_all = np.concatenate(pooled_s) if pooled_s else np.zeros(0)

    def mean(key: str) -> float:
        vals = [v[key] for v in per.values() if v[key] == v[key]]
        return round(float(np.mean(vals)), 4) if vals else float("nan")

    free = [s for s in series if s.labels is None or not s.labels[s.scored_from :].any()]
    false_opens = sum(int(runs[s.name].opened[s.scored_from :].sum()) for s in free)
    free_days = sum(_outside_days(s) for s in free)
    return {
        "series": len(labelled),
        "roc_auc_mean": mean("roc_auc"),
        "roc_auc_pooled": round(roc_auc(y_all, s_all), 4),
        "pr_auc_mean": mean("pr_auc"),
        "pr_auc_pooled": round(pr_auc(y_all, s_all), 4),
        "vus_pr_mean": mean("vus_pr"),
        "alerts": {
            "windows": windows,
            "windows_caught": caught,
            "recall": round(caught / windows, 4) if windows else None,
            "episodes": episodes,
            "episodes_inside": inside,
            "precision": round(inside / episodes, 4) if episodes else None,
            "median_delay_s": round(float(np.median(delays_ms)) / 1000, 1) if delays_ms else None,
        },
        "false_episodes_per_day_unlabelled": round(false_opens / free_days, 2) if free_days else None,
        "per_series": per,
        "records": _records_per_day(series, runs),
    }


def nab_metrics(series: list[Series], runs: dict[str, EntityRun], nab_dir: Path) -> dict[str, Any]:
    """NAB's normalised scores (sweep and own alerts) of every profile."""
    from tools.evaluation import nab_scoring as ns

    bench = ns.load_benchmark(nab_dir)
    if len(series) != len(bench.files):
        # A subset (--quick): the benchmark is that subset (windows, probation, normalisation).
        keep = {s.name for s in series}
        bench = ns.NabBenchmark(
            {k: v for k, v in ns.load_corpus(nab_dir).items() if k in keep},
            {k: v for k, v in ns.load_windows(nab_dir).items() if k in keep},
            ns.load_profiles(nab_dir),
        )
    scores = {s.name: runs[s.name].score for s in series}
    alerts = {s.name: runs[s.name].opened | runs[s.name].escalated for s in series}
    out: dict[str, Any] = {"files": len(series), "sweep": {}, "alerts": {}}
    for profile in NAB_PROFILES:
        swept = ns.sweep(scores, bench, profile)
        out["sweep"][profile] = round(swept.normalised_score, 2)
        out["alerts"][profile] = round(
            ns.score_detections(alerts, bench, profile).normalised_score, 2
        )
    out["threshold"] = round(ns.sweep(scores, bench, "standard").threshold, 6)
    out["records"] = _records_per_day(series, runs)
    return out


# -- the command ---------------------------------------------------------------------------


def evaluate(
    cfg: DetectorConfig,
    data: Path,
    quick: bool = False,
    workers: int = 2,
    progress: bool = True,
    benchmarks: tuple[str, ...] = ("nab", "asd", "skab"),
) -> dict[str, Any]:
    """Every benchmark with one configuration (see the module docstring)."""
    out: dict[str, Any] = {}
    if "nab" in benchmarks:
        nab = load_nab(data / "nab")
        if quick:
            nab = nab[::4]
        runs = run_series(nab, cfg, workers, "NAB", progress)
        out["nab"] = nab_metrics(nab, runs, data / "nab")
    if "asd" in benchmarks:
        asd = load_asd(data / "asd")
        out["asd"] = labelled_metrics(asd, run_series(asd, cfg, workers, "ASD", progress))
    if "skab" in benchmarks:
        skab = load_skab(data / "skab")
        out["skab"] = labelled_metrics(skab, run_series(skab, cfg, workers, "SKAB", progress))
    return out


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a run that the targets are about."""
    row: dict[str, Any] = {}
    if "nab" in res:
        row["nab_sweep"] = res["nab"]["sweep"]["standard"]
        row["nab_alerts"] = res["nab"]["alerts"]["standard"]
    for name in ("asd", "skab"):
        if name in res:
            r = res[name]
            row[f"{name}_roc_auc"] = r["roc_auc_mean"]
            row[f"{name}_vus_pr"] = r["vus_pr_mean"]
            row[f"{name}_recall"] = r["alerts"]["recall"]
            row[f"{name}_precision"] = r["alerts"]["precision"]
    return row


def _markdown(report: dict[str, Any]) -> str:
    res = report["results"]
    lines = [
        f"# Detection quality, {report['date']}",
        "",
        f"`python -m job eval{' --quick' if report['quick'] else ''}` at {report['revision']}, "
        f"{report['seconds']:.0f} s; configuration: the defaults"
        + (f" with {', '.join(report['set'])}" if report["set"] else "")
        + ".",
        "",
        table(res),
    ]
    if report.get("ablation"):
        lines += ["", "## What each model contributes (the ensemble without it, or with it added)", "", ablation_table(report)]
    return "\n".join(lines) + "\n"


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if pct:
        return f"{100 * v:.0f} %"
    return f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else f"{v}"


def table(res: dict[str, Any]) -> str:
    """The detection-quality table (the README's)."""
    rows = ["| benchmark | threshold-free | the job's own alerts | drift + health records per entity-day |", "|---|---|---|---|"]
    if "nab" in res:
        n = res["nab"]
        rows.append(
            f"| NAB v1.1 ({n['files']} series), normalised score, standard / low FP / low FN "
            f"| sweep {n['sweep']['standard']:.1f} / {n['sweep']['reward_low_FP_rate']:.1f} / "
            f"{n['sweep']['reward_low_FN_rate']:.1f} "
            f"| {n['alerts']['standard']:.1f} / {n['alerts']['reward_low_FP_rate']:.1f} / "
            f"{n['alerts']['reward_low_FN_rate']:.1f} "
            f"| {_fmt(n['records']['per_entity_day'])} |"
        )
    for key, title in (("asd", "ASD (6 servers x 19 metrics, 5 min)"), ("skab", "SKAB (34 runs x 8 sensors, 1 s)")):
        if key not in res:
            continue
        r = res[key]
        a = r["alerts"]
        free = r["false_episodes_per_day_unlabelled"]
        rows.append(
            f"| {title} | ROC AUC {_fmt(r['roc_auc_mean'])} (pooled {_fmt(r['roc_auc_pooled'])}), "
            f"PR AUC {_fmt(r['pr_auc_mean'])}, VUS-PR {_fmt(r['vus_pr_mean'])} "
            f"| windows caught {a['windows_caught']}/{a['windows']} ({_fmt(a['recall'], True)}), "
            f"openings inside {a['episodes_inside']}/{a['episodes']} ({_fmt(a['precision'], True)}), "
            f"median delay {_fmt(a['median_delay_s'])} s"
            + (f"; {free} false episodes/day on the anomaly-free run" if free is not None else "")
            + f" | {_fmt(r['records']['per_entity_day'])} |"
        )
    return "\n".join(rows)


def variants(ensemble: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The ablation's ensembles: without each model in turn (when more than one), and with
    each known model it leaves out.

    >>> variants(("extremes", "residual"))[0], variants(("extremes", "residual"))[-1]
    (('without extremes', ('residual',)), ('with hst', ('extremes', 'residual', 'hst')))
    """
    out = []
    if len(ensemble) > 1:
        out += [(f"without {m}", tuple(x for x in ensemble if x != m)) for m in ensemble]
    out += [(f"with {m}", (*ensemble, m)) for m in MODEL_NAMES if m not in ensemble]
    return out


def ablation_table(report: dict[str, Any]) -> str:
    rows = [
        "| ensemble | NAB sweep | NAB alerts | ASD ROC AUC | ASD recall / precision | SKAB ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    entries = [("all: " + ", ".join(report["ensemble"]), headline(report["results"]))]
    entries += list(report["ablation"].items())
    for label, h in entries:
        rows.append(
            f"| {label} | {_fmt(h.get('nab_sweep'))} | {_fmt(h.get('nab_alerts'))} | "
            f"{_fmt(h.get('asd_roc_auc'))} | {_fmt(h.get('asd_recall'), True)} / "
            f"{_fmt(h.get('asd_precision'), True)} | {_fmt(h.get('skab_roc_auc'))} |"
        )
    return "\n".join(rows)


def _revision() -> str:
    import subprocess

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def update_readme(md_table: str, readme: Path = README) -> bool:
    """Put the table between the README's eval markers; False when they are missing."""
    text = readme.read_text()
    start, end = "<!-- eval:start -->", "<!-- eval:end -->"
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{md_table}\n{end}{tail}")
    return True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a quarter of NAB, no ablation (a few minutes)")
    p.add_argument("--data", default=os.environ.get("DATA_DIR", str(DEFAULT_DATA)),
                   help="folder holding nab/, asd/ and skab/ (default: %(default)s)")
    p.add_argument("--out", default="eval/results", help="results folder (default: %(default)s)")
    p.add_argument("--only", default="nab,asd,skab", help="comma-separated benchmarks (default: all)")
    p.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the ensemble without each model (default: on for a full run)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: the cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


USES_CONFIG = True


def run(args: argparse.Namespace, cfg: Any) -> int:
    """``python -m job eval`` with parsed ``args`` and the loaded job configuration."""
    return run_command(args, cfg.detector, args.set)


def run_command(args: argparse.Namespace, cfg: DetectorConfig, sets: list[str]) -> int:
    data = Path(args.data)
    missing = [b for b in args.only.split(",") if not (data / b).is_dir()]
    if missing:
        print(f"error: no {', '.join(missing)} under {data}: pass --data (the folder of the benchmarks)", file=sys.stderr)
        return 2
    benchmarks = tuple(b for b in args.only.split(",") if b)
    t0 = time.monotonic()
    progress = not args.no_progress
    results = evaluate(cfg, data, args.quick, args.workers, progress, benchmarks)
    ablation: dict[str, Any] = {}
    do_ablation = (not args.quick) if args.ablation is None else args.ablation
    if do_ablation:
        for label, ensemble in variants(cfg.model.ensemble):
            sub = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, ensemble=ensemble))
            if progress:
                print(f"{label}:", file=sys.stderr)
            ablation[label] = headline(evaluate(sub, data, args.quick, args.workers, progress, benchmarks))
    report = {
        "date": dt.date.today().isoformat(),
        "revision": _revision(),
        "quick": args.quick,
        "set": sets,
        "ensemble": list(cfg.model.ensemble),
        "seconds": round(time.monotonic() - t0, 1),
        "headline": headline(results),
        "results": results,
        "ablation": ablation,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = report["date"] + ("-quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    md = _markdown(report)
    (out / f"{stem}.md").write_text(md)
    print(md)
    readme_md = table(results) + ("\n\n" + ablation_table(report) if ablation else "")
    whole = not args.quick and not sets and benchmarks == ("nab", "asd", "skab")
    if whole and out.resolve() == (ROOT / "eval" / "results").resolve() and update_readme(readme_md):
        print("README: detection-quality table updated", file=sys.stderr)
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.evaluation.evaluate``: the same as ``python -m job eval``."""
    from job.cli import main as cli_main

    return cli_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
