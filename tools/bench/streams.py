"""The benchmark stream (pure): entities reporting on a grid, as JSON lines."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

from tools.bench.common import ENTITY_OFFSET_MS, HEADLINE_METRICS, T0_MS

# -- the benchmark stream (pure) -------------------------------------------------------------


def metric_names(n: int) -> tuple[str, ...]:
    return tuple(f"m{i:02d}" for i in range(n))


def entity_name(e: int) -> str:
    return f"ent-{e:05d}"


def generate_events(
    n: int,
    *,
    metrics: int = HEADLINE_METRICS,
    entities: int = 16,
    seed: int = 42,
    start_ms: int = T0_MS,
    interval_ms: int = 20_000,
    spike_every: int = 997,
    zipf_s: float = 0.0,
) -> list[str]:
    """``n`` JSON lines, deterministic for the arguments.

    Event ``i`` belongs to entity ``i % entities`` at ``start_ms + (i // entities) *
    interval_ms + entity * 37 ms`` (every entity in timestamp order, nothing late), with
    ``metrics`` metrics ``m00, m01, ...``: a per-entity level, a daily cycle and Gaussian
    noise; every ``spike_every``-th event has its first metric tripled (an anomaly now and
    then, so the alert path runs too). :func:`event_index` inverts the layout.

    With ``zipf_s > 0`` the entities are skewed instead: event ``i`` belongs to an entity
    drawn with probability proportional to ``1 / rank ** zipf_s`` (entity 0 the busiest), at
    ``start_ms + i * (interval_ms // entities)`` (still in timestamp order per entity, and the
    same mean rate); :func:`event_index` does not apply.

    Examples
    --------
    >>> generate_events(2, metrics=1, entities=2)[1]
    '{"entity":"ent-00001","ts":1767225600037,"metrics":{"m00":12.681}}'
    """
    rng = random.Random(seed)
    names = metric_names(metrics)
    levels = [[rng.uniform(10.0, 100.0) for _ in names] for _ in range(entities)]
    lines = []
    day_steps = 86_400_000 / interval_ms
    pick = random.Random(seed + 1)
    weights = [1.0 / (r + 1) ** zipf_s for r in range(entities)] if zipf_s > 0 else []
    cum = list(itertools.accumulate(weights))
    for i in range(n):
        e, step = i % entities, i // entities
        if zipf_s > 0:
            e = bisect.bisect_left(cum, pick.random() * cum[-1])
        daily = math.sin(2.0 * math.pi * (step % day_steps) / day_steps)
        level = levels[e]
        values = {}
        for j, name in enumerate(names):
            x = level[j] * (1.0 + 0.2 * daily) + rng.gauss(0.0, 0.05 * level[j])
            if j == 0 and i % spike_every == spike_every - 1:
                x *= 3.0
            values[name] = round(x, 3)
        ts = start_ms + step * interval_ms + e * ENTITY_OFFSET_MS
        if zipf_s > 0:
            ts = start_ms + i * (interval_ms // entities)
        ev = {
            "entity": entity_name(e),
            "ts": ts,
            "metrics": values,
        }
        lines.append(json.dumps(ev, separators=(",", ":")))
    return lines


def event_index(
    entity: str,
    ts_ms: int,
    *,
    entities: int = 16,
    start_ms: int = T0_MS,
    interval_ms: int = 20_000,
) -> int:
    """The position in :func:`generate_events` of the event of ``entity`` at ``ts_ms``."""
    e = int(entity.rsplit("-", 1)[1])
    step, rest = divmod(ts_ms - start_ms - e * ENTITY_OFFSET_MS, interval_ms)
    if rest or not 0 <= e < entities:
        raise ValueError(f"({entity!r}, {ts_ms}) is not an event of the benchmark stream")
    return step * entities + e


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


