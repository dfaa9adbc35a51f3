"""The stated bound on one entity's state (udfs/core/bounds.py) holds for an entity driven to
every cap at once: models full of the longest names, the most verdicts waiting and
remembered, the order buffer full and a clock jump held, each line as large as allowed."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from state.codec import encode
from udfs.core.bounds import largest_state_bytes
from udfs.core.config import DetectorConfig, LatenessConfig, ModelConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event, ParseConfig, parse_line
from udfs.core.feedback import Verdict, parse_verdict
from udfs.core.model_config import ExtremesConfig, ResidualConfig

T0 = 1_767_225_600_000
MIN = 60_000
WIDE = "\U0001d52a"  # four bytes of UTF-8: the longest a character can be
SNAPSHOT_EVERY = 16


def _line(entity: str, names: list[str], ts: int, i: int, size: int) -> str:
    """An event line of exactly ``size`` bytes (its id pads it)."""
    metrics = {n: 1000.0 + (i * 7919 + k * 104729) % 997 / 7.0 for k, n in enumerate(names)}
    base = json.dumps({"entity": entity, "ts": ts, "metrics": metrics, "id": ""}, ensure_ascii=False)
    pad = size - len(base.encode())
    assert pad >= 0
    return json.dumps({"entity": entity, "ts": ts, "metrics": metrics, "id": "x" * pad}, ensure_ascii=False)


@pytest.mark.parametrize("ensemble", [("extremes", "residual"), ("extremes", "residual", "window", "hst")])
def test_an_entity_at_every_cap_stays_within_the_stated_bound(ensemble: tuple[str, ...]) -> None:
    parse = ParseConfig(max_record_bytes=2_048, max_metrics=8, max_metric_name_chars=16, max_entity_chars=16)
    base = DetectorConfig()
    cfg = dataclasses.replace(
        base,
        lateness=LatenessConfig(max_buffered_events=40, clock_confirm_events=3),
        model=ModelConfig(ensemble=ensemble, hst_trees=2, hst_height=4),
        extremes=ExtremesConfig(max_metrics=8),
        residual=ResidualConfig(max_metrics=8),
        features=dataclasses.replace(base.features, max_metrics=8),
    )
    entity = WIDE * 16
    names = [WIDE * 14 + f"{k:02d}" for k in range(8)]
    det = EntityDetector(entity, cfg, with_features=False)
    lines = []

    def feed(ts: int) -> None:
        line = _line(entity, names, ts, len(lines), parse.max_record_bytes)
        lines.append(line)
        ev = parse_line(line, parse)
        assert isinstance(ev, Event), ev
        det.on_event(ev)

    for i in range(3_000):  # every model full (extremes: its first blocks)
        feed(T0 + i * MIN)
    newest = T0 + 2_999 * MIN
    for i in range(cfg.feedback.remember):  # applied at once, remembered
        det.on_verdict(Verdict(f"{i:04d}" + "a" * 1_020, entity, "false_positive"))
    for i in range(80):  # waiting for their time (at most 64 wait; the rest apply at once)
        raw = json.dumps({
            "alert_id": f"{i:04d}" + "b" * 1_020, "entity": entity, "verdict": "true_positive",
            "reason": "r" * 14_000, "ts": newest + 4_000,
        })
        v = parse_verdict(raw, parse)
        assert isinstance(v, Verdict), str(v)[:200]
        det.on_verdict(v)
    for i in range(1, 41):  # the order buffer full: distinct times within the bound
        feed(newest + i * 100)
    for i in range(2):  # a clock jump held apart (a third would let it in)
        feed(newest + 10 * 3_600_000 + i)
    snap = det.snapshot()
    assert len(snap["order"]["buffer"]) == 40 and len(snap["order"]["held"]) == 2
    assert len(snap["order"]["verdicts"]) == 64
    journal = (SNAPSHOT_EVERY - 1) * (parse.max_record_bytes + 64)
    measured = len(encode(snap)) + journal
    bound = largest_state_bytes(cfg, parse, SNAPSHOT_EVERY)
    assert measured <= bound, (measured, bound)
    # The bound is not a vacuous one: the state before compression (what an input the codec
    # cannot compress would store, state/codec.py) comes near it.
    raw = len(pickle.dumps(snap, protocol=5)) + 1 + journal
    assert raw > bound / 3, (raw, bound)


@pytest.mark.parametrize("ensemble", [("extremes", "residual"), ("extremes", "residual", "window")])
def test_an_entity_with_ever_new_metric_names_stops_growing(ensemble: tuple[str, ...]) -> None:
    """A label or a request id in the metric name: every event brings a new name. The names
    kept are capped (the windows keep the most recently seen, the models their first), so
    the state after 3,000 such events is the state after 1,000."""
    cfg = dataclasses.replace(DetectorConfig(), model=ModelConfig(ensemble=ensemble))
    det = EntityDetector("e", cfg, with_features=False)
    sizes = {}
    for i in range(3_000):
        det.on_event(Event("e", T0 + i * MIN, {"cpu": 50.0 + i % 7, f"req_{i:05d}": float(i % 13)}))
        if i + 1 in (1_000, 3_000):
            sizes[i + 1] = len(encode(det.snapshot()))
    assert abs(sizes[3_000] - sizes[1_000]) <= 2_048, sizes
