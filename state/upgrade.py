"""Upgrades of an entity's stored detector state from older layouts, one small step each.

A snapshot (:meth:`udfs.core.detector.EntityDetector.snapshot`) is named plain data with a
``version``. A savepoint written by an earlier release holds an older layout; the Flink
adapter decodes it (:mod:`state.codec`), passes it through :func:`upgrade`, and restores
the detector from the result.

Which layouts this release reads: its own (6, also as the previous release wrote it, whose
models and stages held fewer fields: a missing field starts fresh, a model of another
ensemble is left behind) and the one of the release before that (5, a positional tuple of
19 fields, or 21 with the events held for their clock). Older layouts
were never released and are refused with a clear error; a state that cannot be upgraded is
never guessed at. Each step is tested from a golden file written by the release that wrote
that layout (``tests/layouts/golden/``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CURRENT", "upgrade"]

CURRENT = 6


def _from_5(snap: tuple[Any, ...]) -> dict[str, Any]:
    """Layout 5 (positional) to 6 (named stages)."""
    if len(snap) not in (19, 21):
        raise ValueError(f"state layout 5 has 19 or 21 fields, got {len(snap)}")
    (
        _version, frontier, max_seen, buffer, last_ts, features, metrics, hst_masses,
        cal_window, cal_hst, threshold, episodes, n_scored, drift, feedback, verdicts, gaps,
        stale_sent, drift_epoch, *clock,
    ) = snap
    held, held_against = clock if clock else ([], 0)
    models: dict[str, Any] = {"window": {}}
    calibrations: dict[str, Any] = {"window": cal_window}
    if hst_masses is not None:
        models["hst"] = {"metrics": list(metrics), "masses": hst_masses}
        calibrations["hst"] = cal_hst
    return {
        "version": 6,
        "last_ts": last_ts,
        "order": {
            "frontier": frontier,
            "max_seen": max_seen,
            "buffer": list(buffer),
            "held": list(held),
            "held_against": held_against,
            "verdicts": list(verdicts),
        },
        "scoring": {
            "features": features,
            "metrics": list(metrics),
            "models": models,
            "calibrations": calibrations,
            "n_scored": n_scored,
        },
        "decision": {"threshold": threshold, "episodes": episodes, "feedback": feedback},
        "health": {
            "gaps": gaps,
            "stale_sent": stale_sent,
            "drift": drift,
            "drift_epoch": drift_epoch,
        },
    }


def upgrade(snap: Any) -> dict[str, Any]:
    """The snapshot in the current layout (:data:`CURRENT`); ``ValueError`` naming the
    layout when it is one this release does not read."""
    if isinstance(snap, dict) and snap.get("version") == CURRENT:
        return snap
    if isinstance(snap, tuple) and snap and snap[0] == 5:
        return _from_5(snap)
    version = snap.get("version") if isinstance(snap, dict) else (snap[0] if snap else None)
    raise ValueError(
        f"entity state layout {version!r} is not one this release reads (5 or {CURRENT}): "
        "start the job without state, or upgrade through the release that wrote it"
    )
