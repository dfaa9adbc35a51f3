"""Settings fail when the configuration is built, never at run time: a fuzz test over the
configuration builder and the live-change path.

Random changes to random ``detector`` keys (values near the default, far from it, of another
type, templates and globs with every kind of brace and bracket) are either refused with
every problem naming its key, or accepted; an accepted configuration then runs a detector
over a stream with an incident, a verdict, a late event and a silence without raising. The
live path (``udfs.core.live.judge_control``) answers every control record with an
acknowledgement or a ``bad_control`` dead letter, and what it accepts runs too.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.config import ConfigError, load_config
from job.config_reference import reference_rows
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event
from udfs.core.feedback import Verdict
from udfs.core.live import BAD_CONTROL, judge_control, resolve

FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_767_225_600_000
KEYS = [(k, t, json.loads(d)) for k, t, d, _ in reference_rows() if k.startswith("detector.")]


def _near(default: Any) -> st.SearchStrategy[Any]:
    """Values a user might write for a key with this default."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(
            st.integers(-3, 3),
            st.integers(-(2**63), 2**63),
            st.sampled_from([default * 10, default // 10, -default, 2**62, 10**30]),
        )
    if isinstance(default, float):
        return st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, -0.0, 1e-300, 1e300, default * 1e6, default / 1e6, -default]),
        )
    if isinstance(default, str):
        return st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                ["*", "db-*", "[z-a]", "{entity}", "{host}", "https://r/{", "}", "{{}}",
                 "{entity.__class__}", "{0}", "{ts:%Y}", "{alert_id!r}", "max", "hst", "mean"]
            ),
        )
    return st.just(default)


_other = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def changes(draw: Any, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    keys = [k for k in KEYS if sections is None or k[0].split(".")[1] in sections]
    picked = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique_by=lambda k: k[0]))
    out: dict[str, Any] = {}
    for key, _type, default in picked:
        value = draw(st.one_of(_near(default), _other) if default is not None else _other)
        node = out
        parts = key.split(".")[1:]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _stream() -> list[Event | Verdict]:
    rng = random.Random(3)
    out: list[Event | Verdict] = []
    t = T0
    for i in range(700):
        t += 20_000 if i != 500 else 3 * 3_600_000  # and one silence of three hours
        cpu = 50 + rng.gauss(0, 2) + (40 if 600 <= i < 610 else 0)
        out.append(Event("e", t, {"cpu": cpu, "mem": 30 + rng.gauss(0, 1)}))
    out.insert(650, Event("e", T0 + 20_000, {"cpu": 1.0}))  # late
    out.insert(640, Verdict("x", "e", "false_positive", "", t - 1_000_000))
    return out


STREAM = _stream()


def _runs(cfg: DetectorConfig) -> None:
    det = EntityDetector("e", cfg)
    for item in STREAM:
        if isinstance(item, Verdict):
            det.on_verdict(item)
        else:
            det.on_event(item)
    det.on_watermark(T0 + 10**9)
    det.flush()


def _load(change: dict[str, Any]) -> Any:
    """The job's configuration with ``change`` as the ``detector`` section of a YAML file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"detector": change}, f)
    try:
        return load_config(f.name)
    finally:
        os.unlink(f.name)


@FUZZ
@given(changes())
def test_the_builder_refuses_a_bad_setting_naming_it_or_the_detector_runs(
    change: dict[str, Any],
) -> None:
    try:
        cfg = _load(change)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("detector."), problem
        return
    _runs(cfg.detector)


@FUZZ
@given(changes(sections=("threshold", "alerts", "rules", "maintenance", "feedback", "drift")))
def test_a_live_change_is_acknowledged_and_runs_or_is_a_bad_control_dead_letter(
    change: dict[str, Any],
) -> None:
    base = DetectorConfig()
    raw = json.dumps({"config_version": "fuzz", "detector": change}, allow_nan=True)
    stored, rec = judge_control(base, None, raw)
    if stored is None:
        assert rec.reason == BAD_CONTROL and "detector" in rec.detail  # type: ignore[union-attr]
        return
    assert rec["check"] == "config_applied"  # type: ignore[index]
    cfg, problems = resolve(base, json.loads(stored)["overrides"], "fuzz")
    assert cfg is not None and not problems
    _runs(cfg)


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("detector.alerts.runbook_url=https://r/{host}", "runbook_url"),
        ("detector.alerts.dashboard_url=https://r/{ts:%Y}", "dashboard_url"),
        ("detector.rules.rules=[{metrics: 'cpu[z-a]', direction: spike}]", "metrics"),
        ("detector.drift.reset_entities=db-[9-0]", "reset_entities"),
    ],
)
def test_a_bad_template_or_glob_is_refused_at_start_naming_the_key(setting: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [setting])
    assert any(key in p for p in err.value.problems), err.value.problems


def test_a_bad_template_sent_live_is_a_bad_control_naming_the_key() -> None:
    raw = json.dumps(
        {"config_version": "2", "detector": {"alerts": {"runbook_url": "https://r/{host}"}}}
    )
    stored, rec = judge_control(DetectorConfig(), None, raw)
    assert stored is None
    assert rec.reason == BAD_CONTROL and "runbook_url" in rec.detail  # type: ignore[union-attr]
    assert math.isfinite(len(rec.detail))  # type: ignore[union-attr]
