"""The alert contract (job/schemas/alert.schema.json) holds for what the detector really emits:
every alert record of a replay over a stream with incidents validates, and the schema rejects
records that break it."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from job.config import load_config
from tests import ROOT
from tests.configs import FAST
from udfs.core.alerts import ALERT_SCHEMA_VERSION, EpisodeTracker
from udfs.core.events import Event
from udfs.core.replay import replay

SCHEMA_PATH = ROOT / "job" / "schemas" / "alert.schema.json"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _stream(seed: int = 5, minutes: int = 480) -> Iterator[Event]:
    """Three entities every 20 s for 8 hours with a cpu spike, a latency surge that jumps
    from 1.8x to 40x and a cpu dip."""
    rng = random.Random(seed)
    for step in range(minutes * 3):
        ts = T0 + step * 20_000
        minute = step // 3
        for e in range(3):
            cpu = 40 + 10 * (e % 2) + rng.gauss(0, 2)
            lat = 100 + rng.gauss(0, 5)
            if e == 1 and 300 <= minute < 315:
                cpu += 45
            if e == 2 and 360 <= minute < 380:
                lat *= 1.8 if step == 1080 else 40
            if e == 0 and 420 <= minute < 430:
                cpu -= 30
            yield Event(f"e{e}", ts, {"cpu": round(cpu, 3), "lat_ms": round(lat, 3)})


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    cfg = load_config(None, FAST).detector
    # Through strict JSON, as the job writes them (NaN or infinity would fail here).
    return [
        json.loads(json.dumps(rec, allow_nan=False))
        for kind, rec in replay(_stream(), cfg)
        if kind == "alert"
    ]


def test_schema_is_versioned_like_the_records(validator: jsonschema.Draft202012Validator) -> None:
    schema = validator.schema
    assert schema["$id"].endswith("/alert/1.json")
    assert schema["properties"]["schema_version"] == {
        "description": "Version of this record layout.",
        "const": ALERT_SCHEMA_VERSION,
    }


def test_every_alert_of_a_replay_with_incidents_validates(
    validator: jsonschema.Draft202012Validator, alerts: list[dict[str, Any]]
) -> None:
    assert {"open", "resolved"} <= {a["kind"] for a in alerts}
    assert {"spike", "dip"} == {a["direction"] for a in alerts}
    for rec in alerts:
        errors = [e.message for e in validator.iter_errors(rec)]
        assert errors == [], (rec, errors)


def test_every_kind_and_severity_validates_with_a_real_explanation(
    validator: jsonschema.Draft202012Validator, alerts: list[dict[str, Any]]
) -> None:
    """Escalations depend on the detector's tuning; drive the tracker with a real body."""
    cfg = load_config(None, FAST).detector
    opened = next(a for a in alerts if a["kind"] == "open")
    body = {k: opened[k] for k in ("score", "threshold", "direction", "features", "config_version")}
    # Resolution by time and a cooldown, so that every kind and the suppressed count appear.
    timed = dataclasses.replace(
        cfg.alerts, quiet_events=0, quiet_period_ms=600_000, cooldown_ms=900_000
    )
    tracker = EpisodeTracker(timed, opened["entity"])
    records = []
    minute = 60_000
    for i, (anomalous, severity) in enumerate([(True, 0), (True, 1), (True, 2), (False, 0)]):
        records += tracker.on_decision(T0 + i * minute, anomalous, severity, body)
    records += tracker.on_decision(T0 + 60 * minute, False, 0, {})
    records += tracker.on_decision(T0 + 61 * minute, True, 1, body)  # in the cooldown
    records += tracker.on_decision(T0 + 120 * minute, True, 1, body)  # carries the count
    assert [(r["kind"], r["severity"]) for r in records] == [
        ("open", "info"),
        ("escalate", "warning"),
        ("escalate", "critical"),
        ("resolved", "critical"),
        ("open", "warning"),
    ]
    assert records[-1]["suppressed_before"] == 1
    for rec in records:
        rec = json.loads(json.dumps(rec, allow_nan=False))
        errors = [e.message for e in validator.iter_errors(rec)]
        assert errors == [], (rec, errors)


def test_optional_extensions_validate_and_unknown_fields_do_not(
    validator: jsonschema.Draft202012Validator, alerts: list[dict[str, Any]]
) -> None:
    rec = dict(alerts[0])
    rec.update(
        rule="lat_*",
        maintenance=False,
        threshold_offset=0.25,
        filter_probability=0.12,
        suppressed_global=3,
        rarity=9.25,
        threshold_rarity=3.5,
    )
    assert list(validator.iter_errors(rec)) == []
    rec["priority"] = "P1"
    assert [e.validator for e in validator.iter_errors(rec)] == ["additionalProperties"]


@pytest.mark.parametrize(
    ("change", "keyword"),
    [
        (lambda r: r.pop("alert_id"), "required"),
        (lambda r: r.update(severity="urgent"), "enum"),
        (lambda r: r.update(kind="closed"), "enum"),
        (lambda r: r.update(schema_version=2), "const"),
        (lambda r: r.update(alert_id="A3F2D2AB9C8E6B4B"), "pattern"),
        (lambda r: r.update(ts="2026-01-01 00:00:00"), "pattern"),
        (lambda r: r.update(score=1.5), "maximum"),
        (lambda r: r.update(suppressed_before=-1), "minimum"),
        (lambda r: r.update(features=[]), "minItems"),
        (lambda r: r["features"][0].pop("expected"), "required"),
        (lambda r: r.update(filter_probability="high"), "type"),
    ],
)
def test_schema_rejects_broken_records(
    validator: jsonschema.Draft202012Validator,
    alerts: list[dict[str, Any]],
    change: Any,
    keyword: str,
) -> None:
    rec = json.loads(json.dumps(alerts[0]))  # a deep copy
    change(rec)
    assert [e.validator for e in validator.iter_errors(rec)] == [keyword]
