"""Where the plain operator loop spends its time, per module and per phase."""

from __future__ import annotations

import cProfile
import importlib.metadata
import pstats
from collections.abc import Sequence
from typing import Any

from tools.bench.common import HEADLINE_METRICS
from tools.bench.loops import operator_loop
from udfs.core.config import DetectorConfig
from udfs.core.events import ParseConfig

# -- profile of the plain loop ------------------------------------------------------------------

# Innermost frame whose file matches decides the module category of a sample.
_MODULE_CATEGORIES = (
    ("/json/", "json (stdlib)"),
    ("/pickle.py", "state codec (pickle)"),
    ("/copyreg.py", "state codec (pickle)"),
    ("state/codec.py", "state codec (pickle)"),
    ("udfs/core/features.py", "features"),
    ("udfs/core/hst.py", "HST"),
    ("udfs/core/calibration.py", "calibration"),
    ("udfs/core/alerts.py", "alert episodes"),
    ("udfs/core/events.py", "parsing (events.py)"),
    ("udfs/core/drift.py", "drift monitor"),
    ("udfs/core/detector.py", "detector glue (ordering, z, vectors)"),
    ("/datetime.py", "datetime"),
    ("tools/bench/", "harness loop"),
)


def _module_category(path: str) -> str | None:
    for needle, name in _MODULE_CATEGORIES:
        if needle in path:
            return name
    return None


def _shares(costs: dict[str, float]) -> list[dict[str, Any]]:
    total = sum(costs.values()) or 1.0
    rows = [
        {"what": k, "share": round(v / total, 4), "seconds": round(v, 4)}
        for k, v in costs.items()
    ]
    return sorted(rows, key=lambda r: -r["share"])


def profile_plain(lines: Sequence[str], cfg: DetectorConfig) -> dict[str, Any]:
    """Where the ``operator`` loop spends its time, by module and by operator phase.

    *Module*: each sample goes to the innermost frame of a known module (so ``json.loads``
    called by the parser counts as json, ``pickle`` under the codec as the codec). *Phase*:
    the call made by the loop body (``parse_line``, ``to_json``, ``loads``, ``decode``,
    ``restore``, ``on_event``, ``snapshot``, ``encode``).
    """
    try:
        import pyinstrument
    except ImportError:
        return _profile_cprofile(lines, cfg)
    profiler = pyinstrument.Profiler(interval=0.0005)
    profiler.start()
    operator_loop(lines, cfg, ParseConfig(), ())
    session = profiler.stop()
    by_module: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for stack, seconds in session.frame_records:
        frames = [f.split("\x00") for f in stack]
        loop_at = next(
            (k for k, f in enumerate(frames) if f[0] == "operator_loop"), None
        )
        if loop_at is None:
            continue
        inner = frames[loop_at + 1 :]
        phase = inner[0][0] if inner else "loop body"
        by_phase[phase] = by_phase.get(phase, 0.0) + seconds
        cat = "other"
        for f in reversed(inner):
            c = _module_category(f[1] if len(f) > 1 else "")
            if c:
                cat = c
                break
        else:
            if not inner:
                cat = "harness loop"
        by_module[cat] = by_module.get(cat, 0.0) + seconds
    return {
        "tool": f"pyinstrument {importlib.metadata.version('pyinstrument')} (sampling, 0.5 ms)",
        "events": len(lines),
        "metrics": HEADLINE_METRICS,
        "by_module": _shares(by_module),
        "by_phase": _shares(by_phase),
    }


def _profile_cprofile(lines: Sequence[str], cfg: DetectorConfig) -> dict[str, Any]:
    prof = cProfile.Profile()
    prof.enable()
    operator_loop(lines, cfg, ParseConfig(), ())
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_module: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for (path, _line, func), (_cc, _nc, tottime, _cumtime, callers) in stats.items():
        cat = _module_category(path)
        if cat is None:
            name = func.lower()
            cat = (
                "state codec (pickle)"
                if "pickle" in name or "unpickler" in name
                else "json (stdlib)"
                if "json" in name or "scanner" in name or "encode_basestring" in name
                else "other (builtins)"
            )
        by_module[cat] = by_module.get(cat, 0.0) + tottime
        for (cpath, _cl, cfunc), caller_stats in callers.items():
            if cfunc == "operator_loop" and cpath.endswith("bench.py"):
                by_phase[func] = by_phase.get(func, 0.0) + caller_stats[3]
    return {
        "tool": "cProfile (deterministic; call overhead inflates small functions)",
        "events": len(lines),
        "metrics": HEADLINE_METRICS,
        "by_module": _shares(by_module),
        "by_phase": _shares(by_phase),
    }


