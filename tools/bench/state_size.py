"""State bytes per entity as history grows (plain Python)."""

from __future__ import annotations

import time
from typing import Any

from state.codec import decode, encode
from tools.bench.common import SNAPSHOT_EVERY, WITH_FEATURES
from tools.bench.streams import entity_name, generate_events
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event, ParseConfig, parse_line
from udfs.detect import entry_size
from udfs.parse import handoff

# -- state size (plain Python) --------------------------------------------------------------


def steady_state_hours(cfg: DetectorConfig, interval_ms: int = 20_000) -> float:
    """Event-time hours after which an entity's state stops growing, plus one hour.

    The windows grow until the longest is covered; the drift monitor is fed only ready
    events (``min_calibration_events`` calibrated), and its state is complete once its
    warm-up, its reference and its first current window have passed (``udfs.core.drift``);
    the ``extremes`` model keeps ``blocks`` completed blocks of ``block_events``. The latest
    of the three, plus an hour: at the defaults and 20 s, 20,000 events (112.1 h).
    """
    longest = max(w.length_ms for w in cfg.features.windows)
    events = cfg.model.min_calibration_events
    if cfg.drift.enabled:
        d = cfg.drift
        events += d.warmup_events + d.reference_events + d.window_events
    if "extremes" in cfg.model.ensemble:
        events = max(events, cfg.extremes.blocks * cfg.extremes.block_events)
    return max(longest, events * interval_ms) / 3_600_000 + 1.0


def state_growth(
    metrics: int, cfg: DetectorConfig, *, hours: float, interval_ms: int = 20_000
) -> dict[str, Any]:
    """Encoded state of one entity as its history grows; codec cost at the end.

    The state is bounded by construction (bucketed windows, fixed-size histograms and HST
    masses, a bounded order buffer, the drift monitor's fixed samples), so the value after
    :func:`steady_state_hours` is the steady state.
    """
    steps = int(hours * 3_600_000 / interval_ms)
    lines = generate_events(steps, metrics=metrics, entities=1, interval_ms=interval_ms, seed=7)
    det = EntityDetector(entity_name(0), cfg, WITH_FEATURES)  # as the operator builds it
    pcfg = ParseConfig()
    checkpoints = {int(h * 3_600_000 / interval_ms): h for h in (1, 6, 12, 24) if h < hours}
    growth = []
    for i, line in enumerate(lines, 1):
        ev = parse_line(line, pcfg)
        assert isinstance(ev, Event)
        det.on_event(ev)
        if i in checkpoints:
            growth.append({"hours": checkpoints[i], "bytes": len(encode(det.snapshot()))})
    data = encode(det.snapshot())
    growth.append({"hours": hours, "bytes": len(data)})
    # The operator's state also holds up to SNAPSHOT_EVERY - 1 journaled event payloads.
    payload = max(
        entry_size(handoff(ev)[2])
        for ev in (parse_line(x, pcfg) for x in lines[-100:])
        if isinstance(ev, Event)
    )
    journal = (SNAPSHOT_EVERY - 1) * payload
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        encode(det.snapshot())
    enc_us = (time.perf_counter() - t) / reps * 1e6
    t = time.perf_counter()
    for _ in range(reps):
        EntityDetector.restore(det.entity, cfg, decode(data))
    dec_us = (time.perf_counter() - t) / reps * 1e6
    return {
        "metrics": metrics,
        "steady_bytes": len(data),
        "journal_max_bytes": journal,
        "steady_bytes_with_journal": len(data) + journal,
        "growth": growth,
        "snapshot_encode_us": round(enc_us, 1),
        "decode_restore_us": round(dec_us, 1),
        "events": steps,
    }


