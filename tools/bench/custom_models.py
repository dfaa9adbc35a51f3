"""What each kind of custom model (``detector.model.custom``) costs beside the built-in
ensemble: events per CPU-second of the detection core's plain loop and encoded state bytes
per entity, in one run, as ratios to the default configuration measured in the same run.

    .venv/bin/python -m tools.bench.custom_models [--events 20000] [--out bench/results]

The artifacts are fitted (``tools.train_model``) on the first 30 % of the same stream;
each configuration runs the whole stream ``--reps`` times and keeps its best.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

from job.config import load_config
from state.codec import encode
from tools.bench.streams import generate_events
from tools.train_model import fit
from udfs.core.detector import EntityDetector
from udfs.core.events import Event, ParseConfig, parse_line

__all__ = ["KINDS", "measure", "render"]

_SVM = "preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.02)"
_HST = "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)"

#: The configurations measured, by label: ``--set`` overrides (``@IF@``, ``@SVM@``: the artifacts).
KINDS: dict[str, list[str]] = {
    "default": [],
    "river_one_class_svm": [f'detector.model.custom=[{{name: m, kind: river, spec: "{_SVM}"}}]'],
    "river_half_space_trees": [f'detector.model.custom=[{{name: m, kind: river, spec: "{_HST}"}}]'],
    "artifact_isolation_forest": ["detector.model.custom=[{name: m, kind: artifact, path: '@IF@'}]"],
    "artifact_one_class_svm": ["detector.model.custom=[{name: m, kind: artifact, path: '@SVM@'}]"],
}


def _run(events: list[Event], sets: list[str]) -> tuple[float, float]:
    cfg = load_config(None, sets).detector
    detectors: dict[str, EntityDetector] = {}
    start = time.process_time()
    for ev in events:
        det = detectors.get(ev.entity)
        if det is None:
            det = detectors[ev.entity] = EntityDetector(ev.entity, cfg)
        det.on_event(ev)
    spent = time.process_time() - start
    size = statistics.mean(len(encode(d.snapshot())) for d in detectors.values())
    return len(events) / spent, size


def measure(events: int, folder: Path, reps: int = 2, metrics: int = 4, entities: int = 10) -> dict[str, Any]:
    """Events per CPU-second, its ratio to ``default``, and state bytes per entity, by kind."""
    lines = generate_events(events, metrics=metrics, entities=entities)
    stream = [e for e in (parse_line(line, ParseConfig()) for line in lines) if isinstance(e, Event)]
    history = stream[: len(stream) * 3 // 10]
    paths = {"if": folder / "custom-iforest.json", "svm": folder / "custom-svm.json"}
    paths["if"].write_text(json.dumps(fit(history, "isolation_forest", [], None)))
    paths["svm"].write_text(json.dumps(fit(history, "one_class_svm", [], None, max_svm_events=1_000)))
    best: dict[str, tuple[float, float]] = {}
    for _ in range(reps):
        for kind, sets in KINDS.items():
            sets = [s.replace("@IF@", str(paths["if"])).replace("@SVM@", str(paths["svm"])) for s in sets]
            eps, size = _run(stream, sets)
            if kind not in best or eps > best[kind][0]:
                best[kind] = (eps, size)
    base = best["default"][0]
    return {
        "events": len(stream), "metrics": metrics, "entities": entities, "reps": reps,
        "kinds": {k: {"eps_per_cpu_s": round(e), "ratio_to_default": round(e / base, 3),
                      "state_bytes_per_entity": round(s)} for k, (e, s) in best.items()},
    }


def render(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    rows = [
        f"| {kind} | {r['eps_per_cpu_s']:,} | {r['ratio_to_default']:.2f} | {r['state_bytes_per_entity']:,} |"
        for kind, r in result["kinds"].items()
    ]
    return "\n".join([
        f"Custom models beside the default ensemble: {result['events']:,} events of "
        f"{result['entities']} entities at {result['metrics']} metrics, plain loop, CPU time, "
        f"best of {result['reps']}.",
        "",
        "| kind | events / CPU-s | ratio to default | state bytes per entity |",
        "|---|---|---|---|",
        *rows,
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.custom_models", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(args.events, out, args.reps)
    stem = out / f"{date.today().isoformat()}-custom-models"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    for artifact in ("custom-iforest.json", "custom-svm.json"):
        (out / artifact).unlink(missing_ok=True)
    print(render(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
