"""Run the detection core over the Numenta Anomaly Benchmark (NAB v1.1) and score it.

``python -m job nab --nab-dir DIR --out OUT`` replays every data file of a NAB checkout
(``DIR/data/<category>/<file>.csv``, columns ``timestamp,value``; naive timestamps are UTC)
through the pure detection core, one :class:`~udfs.core.detector.EntityDetector` per file
(the file's relative path is the entity, ``value`` its one metric), with one global
configuration. It writes:

* ``OUT/results/flinkanomaly/<category>/flinkanomaly_<file>.csv``: NAB's result format,
  ``timestamp,value,anomaly_score,label``, one row per data row, in file order. ``label`` is
  NAB's (``CorpusLabel.getLabels``): 1 for a row whose timestamp lies inside one of the file's
  windows of ``labels/combined_windows.json`` (limits included), else 0.
* ``OUT/scores.json``: per scoring profile, the normalised NAB score computed two ways:

  - ``swept``: NAB's own rule, one corpus-wide threshold on ``anomaly_score`` chosen to
    maximise the total (:func:`tools.evaluation.nab_scoring.sweep`), with that threshold;
    ``swept_ready_only`` the same with the rows the core marks not ready (``ready = 0``,
    warm-up) scored 0;
  - ``alerts``: the system's own decisions, no sweep: the rows on which the detector emitted
    an alert record of kind ``open`` or ``escalate`` (what an on-call engineer would see);
    ``alerts_open`` counts only ``open`` records, ``is_alert`` every row judged anomalous
    (``is_alert = 1``, before episodes, cooldown and rate limits).

  It also holds the published scores of reference detectors (``results/final_results.json``
  of the checkout when present), per-category diagnostics of the standard profile, and the
  configuration used.

A row the core does not score (a dead letter, or an event late by more than
``lateness.max_out_of_orderness_ms`` behind its file's newest timestamp) gets
``anomaly_score`` 0 and no alert; the counts are in ``scores.json``.

When ``--files`` selects a subset, the benchmark (windows, probation, normalisation) is that
subset, so the numbers are not comparable with the leaderboard.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from job.config import JobConfig, to_plain
from job.io import CsvOptions, read_records
from tools.evaluation import nab_scoring as ns
from tools.evaluation.runner import run_entity
from udfs.core.config import DetectorConfig
from udfs.core.events import DeadLetter, ParseConfig

__all__ = [
    "DETECTOR_NAME",
    "FileRun",
    "discover_files",
    "format_report",
    "label_rows",
    "run_file",
    "run_nab",
]

DETECTOR_NAME = "flinkanomaly"
RESULT_COLUMNS = ("timestamp", "value", "anomaly_score", "label")

#: Reference detectors: name in ``final_results.json`` -> name on the NAB scoreboard.
REFERENCE_NAMES = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "knncad": "KNN CAD",
    "randomCutForest": "Random Cut Forest",
    "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian",
}
#: Standard-profile scores of the NAB scoreboard, used when the checkout has no
#: ``results/final_results.json``.
PUBLISHED_STANDARD = {
    "ARTime": 74.9,
    "numenta": 70.5,
    "contextOSE": 69.9,
    "knncad": 58.0,
    "randomCutForest": 51.7,
    "twitterADVec": 47.1,
    "windowedGaussian": 39.6,
}

#: The detection variants of ``scores.json``: key -> what counts as a detection.
DETECTION_VARIANTS = {
    "alerts": "rows with an alert record of kind open or escalate",
    "alerts_open": "rows with an alert record of kind open",
    "is_alert": "rows scored with is_alert = 1",
}

#: Rows of the printed table: key in ``scores.json`` -> label.
ROW_LABELS = {
    "swept": "swept threshold",
    "swept_ready_only": "swept, ready rows",
    "alerts": "alerts (open/escalate)",
    "alerts_open": "alerts (open only)",
    "is_alert": "is_alert",
}

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FileRun:
    """What the core produced for one NAB data file (one entry per data row, file order).

    Attributes
    ----------
    path : str
        Relative path, e.g. ``realKnownCause/nyc_taxi.csv``.
    timestamps : numpy.ndarray of datetime64[ns]
        The file's timestamps.
    anomaly_score : numpy.ndarray of float
        The core's ``anomaly_score`` (0 for rows it did not score).
    is_alert, opened, escalated : numpy.ndarray of bool
        ``is_alert = 1``; an ``open`` record; an ``escalate`` record, emitted on that row.
    ready : numpy.ndarray of bool
        The core's readiness flag.
    late, dead_letters : int
        Rows the core did not score, and why.
    seconds : float
        Time spent in the core and writing the result file.
    """

    path: str
    timestamps: npt.NDArray[np.datetime64]
    anomaly_score: FloatArray
    is_alert: BoolArray
    opened: BoolArray
    escalated: BoolArray
    ready: BoolArray
    late: int
    dead_letters: int
    seconds: float

    def detections(self, variant: str) -> BoolArray:
        """The rows counted as detections by one of :data:`DETECTION_VARIANTS`."""
        if variant == "alerts":
            return self.opened | self.escalated
        if variant == "alerts_open":
            return self.opened
        if variant == "is_alert":
            return self.is_alert
        raise ValueError(
            f"unknown detection variant {variant!r} (known: {sorted(DETECTION_VARIANTS)})"
        )


def discover_files(nab_dir: str | os.PathLike[str], patterns: Sequence[str] = ()) -> list[str]:
    """Relative paths (``category/file.csv``) of the data files, filtered by glob patterns.

    Parameters
    ----------
    nab_dir
        Root of the NAB checkout.
    patterns
        ``fnmatch`` patterns matched against the relative path; none means every file.

    Raises
    ------
    FileNotFoundError
        If ``nab_dir/data`` is missing.
    ValueError
        If a pattern matches no file.
    """
    data_dir = Path(nab_dir) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no NAB data directory at {data_dir}")
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    if not patterns:
        return files
    unmatched = [pat for pat in patterns if not fnmatch.filter(files, pat)]
    if unmatched:
        raise ValueError(
            f"--files {', '.join(unmatched)}: no NAB data file matches "
            f"(patterns are relative to {data_dir}, e.g. 'realKnownCause/*.csv')"
        )
    return [f for f in files if any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]


def label_rows(
    timestamps: npt.ArrayLike, windows: Iterable[tuple[object, object]]
) -> npt.NDArray[np.int64]:
    """NAB's per-row label: 1 when the row's timestamp lies in a window (limits included)."""
    ts = pd.DatetimeIndex(pd.to_datetime(np.asarray(timestamps))).as_unit("ns").to_numpy()
    label = np.zeros(len(ts), dtype=np.int64)
    for start, end in windows:
        lo = np.datetime64(pd.Timestamp(start).to_datetime64(), "ns")
        hi = np.datetime64(pd.Timestamp(end).to_datetime64(), "ns")
        label[(ts >= lo) & (ts <= hi)] = 1
    return label


def _result_path(out_dir: Path, rel: str) -> Path:
    category, name = rel.split("/")
    return out_dir / "results" / DETECTOR_NAME / category / f"{DETECTOR_NAME}_{name}"


def run_file(
    nab_dir: str,
    rel: str,
    cfg: DetectorConfig,
    parse: ParseConfig,
    windows: Sequence[tuple[str, str]],
    out_dir: str | None = None,
) -> FileRun:
    """Replay one data file through a fresh detector; write its NAB result file.

    Rows are fed in file order. The detector releases events in ``(ts, content)`` order
    (see :mod:`udfs.core.detector`), so the ``k``-th score record belongs to the ``k``-th
    row of that order among the rows that were neither dead letters nor late; alert
    records belong to the score record that follows them.
    """
    t0 = time.monotonic()
    path = Path(nab_dir) / "data" / rel
    with open(path, newline="") as f:
        raw_rows = [(row["timestamp"], row["value"]) for row in csv.DictReader(f)]
    opts = CsvOptions(ts_column="timestamp", entity=rel, metrics=("value",))
    events = [None if isinstance(rec, DeadLetter) else rec for rec in read_records(path, parse, opts)]
    if len(events) != len(raw_rows):
        raise AssertionError(f"{rel}: read {len(events)} records from {len(raw_rows)} rows")
    run = run_entity(rel, events, cfg)

    timestamps = pd.to_datetime([ts for ts, _ in raw_rows]).as_unit("ns").to_numpy()
    if out_dir is not None:
        _write_result(Path(out_dir), rel, raw_rows, run.score.tolist(), label_rows(timestamps, windows).tolist())
    return FileRun(
        rel,
        timestamps,
        run.score,
        run.is_alert,
        run.opened,
        run.escalated,
        run.ready,
        run.late,
        sum(ev is None for ev in events),
        time.monotonic() - t0,
    )


def _write_result(
    out_dir: Path, rel: str, raw_rows: list[tuple[str, str]], scores: list[float], labels: list[int]
) -> None:
    """The NAB result file of one data file (timestamp, value, anomaly_score, label)."""
    target = _result_path(out_dir, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(RESULT_COLUMNS)
        for (ts, value), s, lab in zip(raw_rows, scores, labels, strict=True):
            writer.writerow((ts, value, repr(s), lab))


def _run_file_job(
    args: tuple[str, str, DetectorConfig, ParseConfig, list[tuple[str, str]], str],
) -> FileRun:
    return run_file(*args)


def _run_all(
    nab_dir: str,
    files: Sequence[str],
    cfg: JobConfig,
    windows: dict[str, list[tuple[str, str]]],
    out_dir: str,
    workers: int,
) -> dict[str, FileRun]:
    data_dir = Path(nab_dir) / "data"
    # Largest files first, so two workers finish at about the same time.
    ordered = sorted(files, key=lambda f: -(data_dir / f).stat().st_size)
    jobs = [(nab_dir, f, cfg.detector, cfg.parse, windows.get(f, []), out_dir) for f in ordered]
    if workers <= 1 or len(jobs) <= 1:
        runs = [_run_file_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            runs = list(pool.map(_run_file_job, jobs))
    return {r.path: r for r in sorted(runs, key=lambda r: r.path)}


def _raw_windows(nab_dir: str) -> dict[str, list[tuple[str, str]]]:
    with open(Path(nab_dir) / "labels" / "combined_windows.json") as f:
        raw: dict[str, list[list[str]]] = json.load(f)
    return {path: [(a, b) for a, b in wins] for path, wins in raw.items()}


def load_references(nab_dir: str) -> tuple[dict[str, dict[str, float]], str]:
    """Reference scores per profile and detector, and where they came from."""
    path = Path(nab_dir) / "results" / "final_results.json"
    if path.is_file():
        with open(path) as f:
            final = json.load(f)
        refs: dict[str, dict[str, float]] = {}
        for det in REFERENCE_NAMES:
            for profile, value in final.get(det, {}).items():
                refs.setdefault(profile, {})[det] = float(value)
        return refs, str(path)
    return {"standard": dict(PUBLISHED_STANDARD)}, "NAB scoreboard (standard profile only)"


def _window_counts(bench: ns.NabBenchmark, rel: str, detections: BoolArray) -> tuple[int, int, int]:
    """(scored windows, of which detected, detections outside windows) after probation."""
    lay = bench.layouts[rel]
    det = detections & lay.scorable
    hit = np.zeros(lay.n_windows, dtype=bool)
    inside = lay.window_index >= 0
    hit[lay.window_index[det & inside]] = True
    scored = lay.scored_windows
    return int(scored.sum()), int((hit & scored).sum()), int((det & ~inside).sum())


def _diagnostics(
    bench: ns.NabBenchmark, runs: dict[str, FileRun], threshold: float
) -> dict[str, Any]:
    """Standard-profile breakdown per category and per file, at the swept threshold and for
    the alert records: windows detected / missed, false detections, raw score."""
    per_file: dict[str, Any] = {}
    variants = {
        "swept": {p: r.anomaly_score >= threshold for p, r in runs.items()},
        "alerts": {p: r.detections("alerts") for p, r in runs.items()},
    }
    scored = {name: ns.score_detections(d, bench, "standard") for name, d in variants.items()}
    for rel in bench.files:
        entry: dict[str, Any] = {}
        for name, dets in variants.items():
            n_win, hit, fp = _window_counts(bench, rel, dets[rel])
            entry[name] = {
                "windows": n_win,
                "detected": hit,
                "missed": n_win - hit,
                "false_detections": fp,
                "raw_score": round(scored[name].per_file[rel].score, 4),
            }
        entry["never_ready_rows"] = int((~runs[rel].ready).sum())
        per_file[rel] = entry
    per_category: dict[str, Any] = {}
    for rel, entry in per_file.items():
        cat = per_category.setdefault(rel.split("/")[0], {"files": 0})
        cat["files"] += 1
        for name in variants:
            acc = cat.setdefault(
                name,
                {"windows": 0, "detected": 0, "missed": 0, "false_detections": 0, "raw_score": 0.0},
            )
            for k in acc:
                acc[k] += entry[name][k]
    for cat in per_category.values():
        for name in variants:
            cat[name]["raw_score"] = round(cat[name]["raw_score"], 4)
    return {"threshold": threshold, "per_category": per_category, "per_file": per_file}


def _profile_scores(runs: dict[str, FileRun], bench: ns.NabBenchmark, name: str) -> dict[str, Any]:
    """One profile's scores: swept over one corpus-wide threshold (all rows, and ready rows
    only) and for each way the job's own alerts detect."""
    scores = {p: r.anomaly_score for p, r in runs.items()}
    best = ns.sweep(scores, bench, name)
    entry: dict[str, Any] = {
        "swept": {
            "score": best.normalised_score,
            "threshold": best.threshold,
            "raw_score": best.raw_score,
        }
    }
    ready_only = ns.sweep(
        {p: np.where(r.ready, r.anomaly_score, 0.0) for p, r in runs.items()}, bench, name
    )
    entry["swept_ready_only"] = {
        "score": ready_only.normalised_score,
        "threshold": ready_only.threshold,
        "raw_score": ready_only.raw_score,
    }
    for variant in DETECTION_VARIANTS:
        res = ns.score_detections(
            {p: r.detections(variant) for p, r in runs.items()}, bench, name
        )
        entry[variant] = {"score": res.normalised_score, "raw_score": res.raw_score}
    return entry


def run_nab(
    nab_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: JobConfig,
    patterns: Sequence[str] = (),
    workers: int = 2,
) -> dict[str, Any]:
    """Run the core over the NAB corpus (or the files matching ``patterns``) and score it.

    Writes the result files and ``scores.json`` under ``out_dir`` and returns what
    ``scores.json`` holds (see the module docstring).
    """
    t0 = time.monotonic()
    nab = str(Path(nab_dir))
    files = discover_files(nab, patterns)
    all_windows = _raw_windows(nab)
    missing = [f for f in files if f not in all_windows]
    if missing:
        raise ValueError(f"{', '.join(missing)}: no entry in labels/combined_windows.json")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = _run_all(nab, files, cfg, all_windows, str(out), workers)
    profiles = ns.load_profiles(nab)
    windows = ns.load_windows(nab)
    bench = ns.NabBenchmark(
        {p: r.timestamps for p, r in runs.items()}, {p: windows[p] for p in runs}, profiles
    )
    per_profile = {name: _profile_scores(runs, bench, name) for name in profiles}
    refs, refs_source = load_references(nab)
    elapsed = time.monotonic() - t0
    report: dict[str, Any] = {
        "detector": DETECTOR_NAME,
        "nab_dir": nab,
        "files": len(runs),
        "full_corpus": not patterns,
        "rows": int(sum(len(r.anomaly_score) for r in runs.values())),
        "windows": bench.n_windows,
        "scored_windows": bench.n_scored_windows,
        "profiles": per_profile,
        "detection_variants": {
            "swept": "anomaly_score >= one corpus-wide threshold (NAB's rule)",
            "swept_ready_only": "as swept, with the rows the core marks not ready scored 0",
            **DETECTION_VARIANTS,
        },
        "counts": {
            "late_rows": sum(r.late for r in runs.values()),
            "dead_letter_rows": sum(r.dead_letters for r in runs.values()),
            "is_alert_rows": int(sum(r.is_alert.sum() for r in runs.values())),
            "open_records": int(sum(r.opened.sum() for r in runs.values())),
            "escalate_records": int(sum(r.escalated.sum() for r in runs.values())),
            "never_ready_rows": int(sum((~r.ready).sum() for r in runs.values())),
        },
        "references": refs,
        "references_source": refs_source,
        "diagnostics_standard": _diagnostics(
            bench, runs, per_profile["standard"]["swept"]["threshold"]
        )
        if "standard" in profiles
        else {},
        "config": to_plain(cfg),
        "core_fingerprint": core_fingerprint(),
        "workers": workers,
        "seconds": round(elapsed, 2),
        "core_seconds": round(sum(r.seconds for r in runs.values()), 2),
    }
    with open(out / "scores.json", "w") as f:
        json.dump(report, f, indent=2, default=_json_default)
        f.write("\n")
    return report


def core_fingerprint() -> str:
    """SHA-256 of the detection core's sources (``udfs/core/*.py``), to tie scores to code."""
    h = hashlib.sha256()
    for src in sorted((Path(__file__).resolve().parents[1] / "udfs" / "core").glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_report(report: dict[str, Any]) -> str:
    """A short table: our scores per profile, the references, the wall time."""
    profiles = list(report["profiles"])
    short = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}
    heads = [short.get(p, p) for p in profiles]
    lines = [
        f"NAB v1.1: {_plural(report['files'], 'file')}, {report['rows']:,} rows, "
        f"{report['windows']} windows"
        + ("" if report["full_corpus"] else " (a subset: not comparable with the leaderboard)"),
        "",
        f"{'detector':<34}" + "".join(f"{h:>10}" for h in heads),
    ]

    def row(label: str, values: Iterable[float | None]) -> str:
        cells = "".join(
            f"{'-':>10}" if v is None or math.isnan(v) else f"{v:>10.1f}" for v in values
        )
        return f"{label:<34}{cells}"

    prof = report["profiles"]
    for key, label in ROW_LABELS.items():
        lines.append(row(f"{DETECTOR_NAME} {label}", (prof[p][key]["score"] for p in profiles)))
    refs = report["references"]
    for det, label in REFERENCE_NAMES.items():
        lines.append(row(f"  {label}", (refs.get(p, {}).get(det) for p in profiles)))
    thr = ", ".join(f"{short.get(p, p)} {prof[p]['swept']['threshold']:.6g}" for p in profiles)
    counts = report["counts"]
    lines += [
        "",
        f"swept thresholds: {thr}",
        f"alert records: {counts['open_records']} open, {counts['escalate_records']} escalate; "
        f"is_alert rows: {counts['is_alert_rows']}; unscored rows: {counts['late_rows']} late, "
        f"{counts['dead_letter_rows']} dead letters",
        f"wall time {report['seconds']:.1f} s ({_plural(report['workers'], 'worker')}; "
        f"{report['core_seconds']:.1f} s in the core)",
    ]
    return "\n".join(lines)


USES_CONFIG = True


def add_arguments(p: Any) -> None:
    p.add_argument("--nab-dir", required=True, help="root of a NAB v1.1 checkout (data/, labels/, config/)")
    p.add_argument("--out", required=True, help="output folder (results/ and scores.json)")
    p.add_argument(
        "--files",
        action="append",
        default=[],
        metavar="GLOB",
        help="only data files whose path under data/ matches, e.g. 'realKnownCause/*.csv' (repeatable)",
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")


def run(args: Any, cfg: JobConfig) -> int:
    return run_nab_command(args.nab_dir, args.out, cfg, args.files, args.workers)


def run_nab_command(
    nab_dir: str, out_dir: str, cfg: JobConfig, patterns: Sequence[str] = (), workers: int = 2
) -> int:
    """The ``nab`` subcommand: run, write, print the table. Returns the exit code."""
    if not (Path(nab_dir) / "data").is_dir():
        raise FileNotFoundError(f"no NAB checkout at {nab_dir} (expected {nab_dir}/data/)")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    report = run_nab(nab_dir, out_dir, cfg, patterns, workers)
    print(format_report(report))
    print(f"outputs in {out_dir}/ (scores.json, results/{DETECTOR_NAME}/)")
    return 0
