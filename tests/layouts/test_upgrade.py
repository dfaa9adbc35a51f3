"""State written by the releases before this one restores here and goes on exactly as it
would have there: golden files written by those releases (tests/layouts/make_golden.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from job.demo_data import write_demo
from state.codec import decode, encode
from state.upgrade import CURRENT, upgrade
from tests.layouts.make_golden import CUT, records
from udfs.core.alert_config import AlertConfig
from udfs.core.config import DetectorConfig, ModelConfig, ThresholdConfig
from udfs.core.detector import EntityDetector
from udfs.core.drift import DriftConfig
from udfs.core.events import Event, ParseConfig
from udfs.core.feedback import parse_event_or_verdict

GOLDEN = Path(__file__).parent / "golden"
# Layout 5's releases (1360c65, landed; a05860d, with the events held for their clock) and
# the configuration they ran by default, in this release's keys.
LAYOUT5 = ["layout5-1360c65.bin", "layout5-a05860d.bin"]
RELEASE5 = DetectorConfig(
    model=ModelConfig(ensemble=("window",), score_smoothing=1),
    threshold=ThresholdConfig(rarity=3.0, target_alert_rate=0.001, fallback_margin=0.5),
    alerts=AlertConfig(
        quiet_events=0, quiet_period_ms=600_000, cooldown_ms=900_000, hysteresis_decades=1.5
    ),
    drift=DriftConfig(warmup_events=0, watch_metrics=True, page_hinkley_direction="both"),
)


def _srv1(tmp_path: Path) -> list[Event]:
    path = tmp_path / "demo.jsonl"
    write_demo(path)
    parsed = [parse_event_or_verdict(x, ParseConfig()) for x in path.read_text().splitlines()]
    return [e for e in parsed if isinstance(e, Event) and e.entity == "srv-1"]


def _assert_goes_on_as(det: EntityDetector, golden_records: str, tmp_path: Path) -> None:
    """The restored ``det`` gives, for the rest of srv-1's stream, the records its release
    wrote (``golden_records``), alerts among them."""
    rest = _srv1(tmp_path)[CUT:]
    got = list(records([o for ev in rest for o in det.on_event(ev)] + det.flush()))
    with gzip.open(GOLDEN / golden_records, "rt") as fh:
        expected = fh.read().splitlines()
    assert any('"kind": "open"' in r for r in expected)
    assert got == expected


@pytest.mark.parametrize("name", LAYOUT5)
def test_a_layout_5_state_goes_on_exactly_as_its_release_did(name: str, tmp_path: Path) -> None:
    snap = decode((GOLDEN / name).read_bytes())
    assert isinstance(snap, tuple) and snap[0] == 5
    det = EntityDetector.restore("srv-1", RELEASE5, upgrade(snap))
    assert det.earliest_buffered_ms() is not None  # the waiting verdict (and buffered events)
    _assert_goes_on_as(det, "layout5.records.jsonl.gz", tmp_path)


def test_a_layout_6_state_of_the_landed_release_goes_on_exactly_as_it_did(tmp_path: Path) -> None:
    """Layout 6 as e392f74 wrote it (its window-only detector, before the models of this
    release), restored here under that release's configuration."""
    snap = decode((GOLDEN / "layout6-e392f74.bin").read_bytes())
    assert isinstance(snap, dict) and snap["version"] == 6
    det = EntityDetector.restore("srv-1", RELEASE5, upgrade(snap))
    _assert_goes_on_as(det, "layout6-e392f74.records.jsonl.gz", tmp_path)


def test_a_layout_6_state_restored_under_other_models_starts_them_fresh(tmp_path: Path) -> None:
    """Under this release's defaults the window model's state is left behind and the
    default models learn from the next event: scores go on, and alerts wait for them."""
    snap = decode((GOLDEN / "layout6-e392f74.bin").read_bytes())
    det = EntityDetector.restore("srv-1", DetectorConfig(), upgrade(snap))
    assert sorted(det.snapshot()["scoring"]["models"]) == ["extremes", "residual"]
    rest = _srv1(tmp_path)[CUT:]
    scores = [r for ev in rest for k, r in det.on_event(ev) if k == "score"]
    warm = DetectorConfig().model.min_calibration_events
    assert len(scores) >= len(rest) - 1
    assert not any(r["ready"] for r in scores[:warm]) and all(r["ready"] for r in scores[warm:])


def test_the_current_layout_passes_unchanged_and_older_ones_are_refused() -> None:
    snap = EntityDetector("e", DetectorConfig()).snapshot()
    assert snap["version"] == CURRENT and upgrade(snap) is snap
    assert upgrade(decode(encode(snap))) == snap
    for old in ((4, 1, 2), (3,), {"version": 7}):
        with pytest.raises(ValueError, match="not one this release reads"):
            upgrade(old)
    with pytest.raises(ValueError, match="19 or 21 fields"):
        upgrade((5, 1, 2))


def test_the_upgraded_state_is_named_in_stages(tmp_path: Path) -> None:
    new: dict[str, Any] = upgrade(decode((GOLDEN / LAYOUT5[0]).read_bytes()))
    assert set(new) == {"version", "last_ts", "order", "scoring", "decision", "health"}
    assert new["order"]["verdicts"] and new["order"]["held"] == []
    assert json.dumps(sorted(new["scoring"]["models"])) == '["window"]'
