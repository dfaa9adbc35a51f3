"""``python -m job train-model``: fit an Isolation Forest or a One-Class SVM with scikit-learn
on an entity history and write it as an artifact the job scores in plain Python.

    python -m job train-model --input history.jsonl --kind isolation_forest --out iforest.json
    python -m job train-model --input history.jsonl --kind one_class_svm --entities 'srv-*' --out svm.json

The input is the job's own event input (JSON lines, or CSV with the ``replay`` options).
Without ``--entities`` one model is fitted per entity (named by the entity itself); with
``--entities PATTERN`` (repeatable) one model per pattern, on the events of every entity it
matches. The vector is the entity's metrics named by ``--features`` (default: every metric
the events carry, sorted); events that lack one are left out of the training. The artifact
(:mod:`udfs.core.models.artifact`) is data: the trees' or the support vectors' arrays, the
feature names and the training window; use it with::

    detector:
      model:
        custom: [{name: iforest, kind: artifact, path: iforest.json}]

Isolation Forest: ``n_estimators=100``, ``max_samples=min(256, n)``, ``random_state=0``
(scikit-learn's defaults, seeded). One-Class SVM: the inputs standardised per feature, RBF
kernel, ``gamma="scale"``, ``nu=--nu`` (default 0.01), on at most ``--max-svm-events``
events (evenly spaced: the fit is quadratic in them).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path
from typing import Any

from job.commands.replay import add_csv_arguments, csv_options
from job.config import load_config
from job.io import read_records
from udfs.core.events import Event
from udfs.core.models.artifact import FORMAT, FORMAT_VERSION, KINDS, parse_artifact

__all__ = ["SUMMARY", "add_arguments", "export_forest", "fit", "fit_one", "run"]

SUMMARY = "fit an Isolation Forest or One-Class SVM per entity on history; write an artifact the job scores"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="history: JSON-lines (.jsonl) or CSV (.csv) events")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--out", required=True, help="artifact file to write (JSON)")
    p.add_argument("--entities", action="append", default=[], metavar="PATTERN",
                   help="one model per pattern (shell-style, repeatable); default: one per entity")
    p.add_argument("--features", help="comma-separated metrics, the vector's order (default: all, sorted)")
    p.add_argument("--nu", type=float, default=0.01, help="One-Class SVM nu (default %(default)s)")
    p.add_argument("--max-svm-events", type=int, default=5_000, help="One-Class SVM: most training events")
    add_csv_arguments(p)


def _groups(events: list[Event], patterns: list[str]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = {}
    for ev in events:
        if not patterns:
            groups.setdefault(ev.entity, []).append(ev)
            continue
        for pattern in patterns:
            if fnmatch.fnmatchcase(ev.entity, pattern):
                groups.setdefault(pattern, []).append(ev)
                break
    return groups


def fit_one(kind: str, x: Any, nu: float = 0.01, max_svm_events: int = 5_000) -> tuple[Any, dict[str, Any]]:
    """The fitted scikit-learn model of ``kind`` on the rows ``x`` and its artifact entry
    (without ``entities`` and ``events``); for the SVM, the model is fitted on the
    standardised rows."""
    return _forest(x) if kind == "isolation_forest" else _svm(x, nu, max_svm_events)


def _forest(x: Any) -> tuple[Any, dict[str, Any]]:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=100, max_samples=min(256, len(x)), random_state=0).fit(x)
    return model, export_forest(model, x.shape[1])


def export_forest(model: Any, n_features: int) -> dict[str, Any]:
    """A fitted ``IsolationForest`` as artifact data (``max_samples`` and its trees)."""
    whole = model._max_features == n_features
    trees = []
    for est, cols in zip(model.estimators_, model.estimators_features_, strict=True):
        t = est.tree_
        trees.append({
            "left": t.children_left.tolist(),
            "right": t.children_right.tolist(),
            "feature": [int(f) for f in t.feature],
            "threshold": [float(v) for v in t.threshold],
            "samples": [int(v) for v in t.n_node_samples],
            "columns": list(range(n_features)) if whole else [int(c) for c in cols],
        })
    return {"max_samples": int(model._max_samples), "trees": trees}


def _svm(x: Any, nu: float, most: int) -> tuple[Any, dict[str, Any]]:
    import numpy as np
    from sklearn.svm import OneClassSVM

    if len(x) > most:
        x = x[np.linspace(0, len(x) - 1, most).round().astype(int)]
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    model = OneClassSVM(kernel="rbf", gamma="scale", nu=nu).fit((x - mean) / std)
    return model, {
        "gamma": float(model._gamma),
        "support": model.support_vectors_.tolist(),
        "dual": [float(v) for v in model.dual_coef_[0]],
        "scale_mean": [float(v) for v in mean],
        "scale_std": [float(v) for v in std],
    }


def fit(
    events: list[Event], kind: str, patterns: list[str], metrics: list[str] | None,
    nu: float = 0.01, max_svm_events: int = 5_000, source: str = "",
) -> dict[str, Any]:
    """The artifact (plain data) of ``kind`` fitted on ``events``."""
    import numpy as np
    import sklearn

    names = metrics or sorted({m for ev in events for m in ev.metrics})
    models = []
    for key, group in _groups(events, patterns).items():
        rows = [[ev.metrics[m] for m in names] for ev in group if all(m in ev.metrics for m in names)]
        if len(rows) < 2:
            continue
        x = np.asarray(rows, dtype=float)
        _, body = fit_one(kind, x, nu, max_svm_events)
        models.append({"entities": key, "events": len(rows), **body})
    if not models:
        raise ValueError("no entity has two events carrying every metric: nothing to fit")
    stamps = [ev.ts_ms for ev in events]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "features": names,
        "trained": {
            "input": source,
            "from_ts": min(stamps),
            "to_ts": max(stamps),
            "events": len(events),
            "sklearn": sklearn.__version__,
        },
        "models": models,
    }


def run(args: argparse.Namespace) -> int:
    path = Path(args.input)
    cfg = load_config(None, [])
    events = [r for r in read_records(path, cfg.parse, csv_options(args, path)) if isinstance(r, Event)]
    metrics = [m.strip() for m in args.features.split(",")] if args.features else None
    artifact = fit(events, args.kind, args.entities, metrics, args.nu, args.max_svm_events, str(path))
    raw = json.dumps(artifact, separators=(",", ":")).encode()
    loaded = parse_artifact(raw)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(raw)
    print(
        f"train-model: {args.kind} on {len(events)} events, {len(artifact['models'])} model(s) over "
        f"{', '.join(artifact['features'])}; wrote {args.out} (version {loaded.version})"
    )
    return 0
