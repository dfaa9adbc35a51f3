"""Live configuration changes: versioned updates of the detector's parameters, applied to a
running job without a restart (pure; the Flink adapter keeps them in broadcast state).

A control record is one JSON object::

    {"config_version": "2026-11-26.2",
     "detector": {"threshold": {"target_alert_rate": 0.0005},
                  "maintenance": {"windows": [{"entities": "db-*",
                                               "start": "2026-11-27T01:00:00Z",
                                               "end": "2026-11-27T03:00:00Z"}]}}}

Updates accumulate: each is merged key by key over the previous ones (a list, such as the
rules or the maintenance windows, is replaced whole), then over the job's start-up
configuration, and the result must validate like a configuration file would. The detectors
then decide under it and stamp ``config_version`` on their alerts and drift records.

Only the sections that change decisions, not the layout of the state, can change live:
:data:`LIVE_SECTIONS` (target alert rate and severity tiers, alerting, rules, maintenance
calendars, feedback, drift thresholds and actions, and the artifacts of ``model.custom``: a
new artifact is rolled out by naming its file, which every TaskManager must be able to read;
its model starts a fresh calibration under its new ``name@version``). Raising ``drift.reset_epoch`` is the
operator's command to rebuild drift references (of the entities matching
``drift.reset_entities``). Windows, models, lateness and drift sizes need a restart from a
savepoint; ``alerts.global_max_per_hour`` belongs to the alert gate operator and is
fixed at start too. A rejected update changes nothing and goes to the dead-letter output
with every problem named.

Examples
--------
>>> base = DetectorConfig()
>>> upd = parse_control('{"config_version": "2", "detector": {"threshold": {"target_alert_rate": 0.01}}}')
>>> cfg, problems = resolve(base, upd.changes, upd.version)
>>> cfg.threshold.target_alert_rate, cfg.config_version, problems
(0.01, '2', [])
>>> resolve(base, {"features": {"windows": []}}, "3")[1]
['detector.features: not a live setting (live: threshold, alerts, rules, maintenance, feedback, drift, model; the rest needs a restart from a savepoint)']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from udfs.core.config import DetectorConfig, ModelConfig
from udfs.core.events import INVALID_JSON, NOT_AN_OBJECT, OVERSIZED, DeadLetter
from udfs.core.typed import build, merge, plain

__all__ = [
    "BAD_CONTROL",
    "LIVE_SECTIONS",
    "ControlUpdate",
    "accumulate",
    "judge_control",
    "parse_control",
    "resolve",
]

LIVE_SECTIONS = ("threshold", "alerts", "rules", "maintenance", "feedback", "drift", "model")
_FIXED_KEYS = {
    ("alerts", "global_max_per_hour"),
    # Of the models, only the custom ones the user brings (a new artifact) change live.
    *(("model", f.name) for f in fields(ModelConfig) if f.name != "custom"),
    # The drift monitor's layout and existence (udfs/core/drift.py DriftMonitor.restore).
    *(
        ("drift", k)
        for k in (
            "enabled",
            "warmup_events",
            "reference_events",
            "window_events",
            "check_every",
            "psi_bins",
            "ks_samples",
        )
    ),
}
BAD_CONTROL = "bad_control"
_MAX_CONTROL_BYTES = 65_536


@dataclass(frozen=True)
class ControlUpdate:
    """One versioned change: ``changes`` is a partial ``detector`` section."""

    version: str
    changes: dict[str, Any]


def parse_control(raw: str) -> ControlUpdate | DeadLetter:
    """Parse one control record; never raises on input (the checks of the values come in
    :func:`resolve`)."""
    if len(raw) > _MAX_CONTROL_BYTES:
        return DeadLetter(OVERSIZED, None, raw[:_MAX_CONTROL_BYTES], "control record too long")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return DeadLetter(INVALID_JSON, None, raw, str(exc)[:200])
    if not isinstance(obj, dict):
        return DeadLetter(NOT_AN_OBJECT, None, raw, "a control record is a JSON object")
    version = obj.get("config_version")
    if not isinstance(version, str) or not version.strip():
        return DeadLetter(BAD_CONTROL, "config_version", raw, "config_version must be a non-empty string")
    changes = obj.get("detector")
    if not isinstance(changes, dict) or not changes:
        return DeadLetter(BAD_CONTROL, "detector", raw, "detector must be a non-empty mapping of changes")
    extra = sorted(set(obj) - {"config_version", "detector"})
    if extra:
        return DeadLetter(BAD_CONTROL, extra[0], raw, f"unknown keys {extra} (config_version, detector)")
    return ControlUpdate(version.strip(), changes)


def resolve(
    base: DetectorConfig, overrides: dict[str, Any], version: str
) -> tuple[DetectorConfig | None, list[str]]:
    """``base`` with the accumulated ``overrides`` under ``version``, or the problems."""
    problems: list[str] = []
    for section, value in overrides.items():
        if section not in LIVE_SECTIONS:
            problems.append(
                f"detector.{section}: not a live setting (live: {', '.join(LIVE_SECTIONS)}; "
                "the rest needs a restart from a savepoint)"
            )
        elif isinstance(value, dict):
            problems += [
                f"detector.{s}.{k}: fixed at start (restart from a savepoint to change it)"
                for s, k in sorted(_FIXED_KEYS)
                if s == section and k in value
            ]
    if problems:
        return None, problems
    data = merge(plain(base), overrides)
    data["config_version"] = version
    cfg = build(DetectorConfig, data, "detector", problems)
    if cfg is not None and not problems:
        problems += _custom_problems(base, cfg)
    return (cfg if not problems else None), problems


def _custom_problems(base: DetectorConfig, cfg: DetectorConfig) -> list[str]:
    """A live ``model.custom`` may roll out artifacts (each must load here, from a path
    every TaskManager can read); a River model cannot be added or changed live."""
    from udfs.core.models.artifact import load_artifact

    problems = []
    rivers = {c for c in base.model.custom if c.kind == "river"}
    for i, spec in enumerate(cfg.model.custom):
        key = f"detector.model.custom[{i}]"
        if spec.kind == "river" and spec not in rivers:
            problems.append(f"{key}: a River model cannot be added or changed live (restart from a savepoint)")
        elif spec.kind == "artifact":
            try:
                load_artifact(spec.path)
            except ValueError as exc:
                problems.append(f"{key}.path: {exc}")
    return problems


def accumulate(previous: dict[str, Any], update: ControlUpdate) -> dict[str, Any]:
    """The overrides after ``update`` (merged key by key over the previous ones)."""
    return merge(previous, update.changes)


def judge_control(
    base: DetectorConfig, stored: str | None, raw: str
) -> tuple[str | None, dict[str, Any] | DeadLetter]:
    """One control record against the stored live state (JSON ``{"version", "overrides"}``
    or None): ``(new stored JSON, config_applied record)`` for a valid change, ``(None, dead
    letter)`` otherwise. Never raises on input: a value no check foresaw is a dead letter.
    """
    upd = parse_control(raw)
    if isinstance(upd, DeadLetter):
        return None, upd
    previous = json.loads(stored)["overrides"] if stored is not None else {}
    overrides = accumulate(previous, upd)
    try:
        cfg, problems = resolve(base, overrides, upd.version)
    except Exception as exc:  # bad input never stops the job
        cfg, problems = None, [f"{type(exc).__name__}: {exc}"[:300]]
    if cfg is None:
        return None, DeadLetter(BAD_CONTROL, "detector", raw, "; ".join(problems))
    ack = {
        "type": "config",
        "check": "config_applied",
        "entity": "*",
        "config_version": upd.version,
        "changes": upd.changes,
    }
    return json.dumps({"version": upd.version, "overrides": overrides}), ack
