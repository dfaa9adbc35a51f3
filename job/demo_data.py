"""The bundled demo stream: realistic metrics of a small fleet with injected incidents.

Five entities (four web servers and a database), one event per entity per minute for three
days, metrics ``cpu`` (%), ``latency_ms`` and ``error_rate`` (%), with a daily cycle,
noise, and occasional harmless blips. Deterministic for a seed. Incidents, injected after a
day and a half of history so every window has warmed up:

- ``srv-2``: a runaway process, cpu pinned near 97 % for 30 minutes;
- ``db-1``: a slow disk, latency about 4x for 45 minutes;
- ``srv-4``: a bad deploy, error rate from ~0.5 % to ~8 % for 20 minutes.

The stream also carries a few malformed records and a few events that arrive too late, so
that the dead-letter and late outputs show something. :func:`incidents` lists the
incidents (for tuning and the report).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

__all__ = ["DEMO_START_MS", "incidents", "write_demo"]

DEMO_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_MIN = 60_000
_DAYS = 3
ENTITIES = ("srv-1", "srv-2", "srv-3", "srv-4", "db-1")


def incidents() -> list[dict[str, Any]]:
    day = 1440
    return [
        {
            "entity": "srv-2",
            "metric": "cpu",
            "start_min": day + 900,
            "minutes": 30,
            "what": "runaway process",
        },
        {
            "entity": "db-1",
            "metric": "latency_ms",
            "start_min": 2 * day + 200,
            "minutes": 45,
            "what": "slow disk",
        },
        {
            "entity": "srv-4",
            "metric": "error_rate",
            "start_min": 2 * day + 660,
            "minutes": 20,
            "what": "bad deploy",
        },
    ]


def _in_incident(entity: str, minute: int, metric: str) -> bool:
    return any(
        i["entity"] == entity
        and i["metric"] == metric
        and i["start_min"] <= minute < i["start_min"] + i["minutes"]
        for i in incidents()
    )


def _event(rng: random.Random, entity: str, minute: int) -> dict[str, Any]:
    daily = math.sin(2 * math.pi * (minute % 1440) / 1440 - math.pi / 2)  # low at night
    base_cpu = 35.0 if entity != "db-1" else 55.0
    cpu = base_cpu + 15.0 * daily + rng.gauss(0, 3.0)
    latency = (120.0 if entity != "db-1" else 8.0) * (1 + 0.25 * daily) + rng.gauss(
        0, 6.0 if entity != "db-1" else 0.6
    )
    errors = max(0.0, 0.5 + 0.1 * daily + rng.gauss(0, 0.12))
    if _in_incident(entity, minute, "cpu"):
        cpu = 97.0 + rng.gauss(0, 1.0)
    if _in_incident(entity, minute, "latency_ms"):
        latency *= 4.0
    if _in_incident(entity, minute, "error_rate"):
        errors = 8.0 + rng.gauss(0, 0.8)
    return {
        "entity": entity,
        "ts": DEMO_START_MS + minute * _MIN,
        "metrics": {
            "cpu": round(min(cpu, 100.0), 2),
            "latency_ms": round(max(latency, 0.1), 2),
            "error_rate": round(errors, 3),
        },
    }


_MALFORMED = [
    "{not json",
    json.dumps({"entity": "", "ts": DEMO_START_MS, "metrics": {"cpu": 1}}),
    json.dumps({"entity": "srv-1", "ts": "last tuesday", "metrics": {"cpu": 1}}),
    json.dumps({"entity": "srv-1", "ts": 1_767_225_600, "metrics": {"cpu": 1}}),  # seconds, not ms
    json.dumps({"entity": "srv-3", "ts": DEMO_START_MS, "metrics": {"cpu": "high"}}),
    json.dumps({"entity": "srv-3", "ts": DEMO_START_MS, "metrics": {}}),
]


def write_demo(path: str | Path, seed: int = 7) -> dict[str, int]:
    """Write the demo stream as JSON lines; return how many lines of each kind."""
    rng = random.Random(seed)
    lines: list[str] = []
    late = 0
    for minute in range(_DAYS * 1440):
        # Entities report in a shuffled order each minute, as they would on a real bus.
        order = list(ENTITIES)
        rng.shuffle(order)
        for entity in order:
            lines.append(json.dumps(_event(rng, entity, minute), separators=(",", ":")))
        if minute % 720 == 360:
            lines.append(_MALFORMED[(minute // 720) % len(_MALFORMED)])
        if minute % 1000 == 999:
            # A straggler 30 minutes behind its entity: late, and reported as such.
            old = _event(rng, "srv-3", minute - 30)
            lines.append(json.dumps(old, separators=(",", ":")))
            late += 1
    lines.append(_MALFORMED[0])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
    return {"lines": len(lines), "late": late}
