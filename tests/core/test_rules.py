"""Alerting rules (udfs.core.rules): the first matching glob decides, direction and minimum
deviations (inclusive bounds) suppress what is not actionable, unmatched metrics alert."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from job.config import _build
from udfs.core.rules import MetricRule, RulesConfig, allowed, rule_for

SPIKE = MetricRule("cpu*", direction="spike")
DIP = MetricRule("free_*", direction="dip")
SIZE = MetricRule("latency_ms", min_abs_deviation=5.0, min_pct_deviation=10.0)
CFG = RulesConfig((SPIKE, DIP, SIZE))


def test_no_rules_allow_everything() -> None:
    assert allowed(RulesConfig(), "cpu", 1.0, 100.0, -50.0)
    assert allowed(RulesConfig(), "cpu", 100.0, 100.0, 0.0)


def test_a_metric_no_rule_matches_is_allowed() -> None:
    assert allowed(CFG, "error_rate", 0.51, 0.5, 0.1)
    assert rule_for(CFG, "error_rate") is None


def test_spike_rule_allows_only_values_above_expected() -> None:
    assert allowed(CFG, "cpu", 90.0, 40.0, 12.0)
    assert not allowed(CFG, "cpu", 10.0, 40.0, -12.0)
    assert allowed(CFG, "cpu_user", 41.0, 40.0, 0.5)  # glob: cpu*


def test_dip_rule_allows_only_values_below_expected() -> None:
    assert allowed(CFG, "free_disk_gb", 1.0, 50.0, -9.0)
    assert not allowed(CFG, "free_disk_gb", 80.0, 50.0, 9.0)


def test_equal_values_take_the_direction_of_z_and_otherwise_only_match_both() -> None:
    assert allowed(CFG, "cpu", 40.0, 40.0, 0.3)  # z > 0: a spike
    assert not allowed(CFG, "cpu", 40.0, 40.0, -0.3)
    assert not allowed(CFG, "cpu", 40.0, 40.0, 0.0)  # neither spike nor dip
    both = RulesConfig((MetricRule("cpu"),))
    assert allowed(both, "cpu", 40.0, 40.0, 0.0)


@pytest.mark.parametrize(
    ("actual", "expected", "ok"),
    [
        (105.0, 100.0, False),  # 5 >= 5 ms but 5 % < 10 %
        (110.0, 100.0, True),  # both bounds met exactly: inclusive
        (109.99, 100.0, False),  # just under 10 %
        (90.0, 100.0, True),  # the size rule takes both directions
        (44.0, 40.0, False),  # 10 % of 40 is 4, but 4 ms < 5 ms
        (45.0, 40.0, True),  # exactly 5 ms (12.5 %)
        (5.0, 0.0, True),  # expected 0: any deviation passes the percent bound
        (4.999, 0.0, False),  # ... but not the absolute one
        (-110.0, -100.0, True),  # percent of |expected|
        (-109.0, -100.0, False),
    ],
)
def test_minimum_deviations_are_inclusive_bounds(actual: float, expected: float, ok: bool) -> None:
    assert allowed(CFG, "latency_ms", actual, expected, 1.0 if actual > expected else -1.0) is ok


def test_the_first_matching_rule_wins() -> None:
    cfg = RulesConfig(
        (MetricRule("disk.io.*", min_abs_deviation=100.0), MetricRule("disk.*", "dip"))
    )
    # disk.io.read matches both: the first (size) rule decides, in either direction.
    assert allowed(cfg, "disk.io.read", 200.0, 50.0, 5.0)
    assert not allowed(cfg, "disk.io.read", 120.0, 50.0, 5.0)
    # disk.used only matches the second.
    assert not allowed(cfg, "disk.used", 200.0, 50.0, 5.0)
    assert allowed(cfg, "disk.used", 20.0, 50.0, -5.0)


@pytest.mark.parametrize(
    ("pattern", "metric", "matches"),
    [
        ("*", "anything.at.all", True),
        ("disk.*", "disk.read.bytes", True),  # * crosses dots
        ("disk.*", "disk", False),
        ("lat?", "lat1", True),
        ("lat?", "lat10", False),
        ("[ab]_rate", "b_rate", True),
        ("[ab]_rate", "c_rate", False),
        ("CPU", "cpu", False),  # case-sensitive on every platform
    ],
)
def test_globs_match_metric_names(pattern: str, metric: str, matches: bool) -> None:
    rule = MetricRule(pattern, direction="spike")
    assert (rule_for(RulesConfig((rule,)), metric) is rule) is matches


def test_nan_deviation_is_not_suppressed_by_size_and_takes_direction_from_z() -> None:
    assert allowed(CFG, "latency_ms", math.nan, 100.0, 3.0)
    assert allowed(CFG, "cpu", math.nan, 40.0, 3.0)
    assert not allowed(CFG, "cpu", math.nan, 40.0, -3.0)


def test_lookups_of_distinct_configurations_do_not_mix() -> None:
    for i in range(40):  # more configurations than the cache keeps
        cfg = RulesConfig((MetricRule("m", "spike" if i % 2 else "dip"),))
        assert allowed(cfg, "m", 2.0, 1.0, 1.0) is bool(i % 2)
        assert allowed(cfg, "m", 0.0, 1.0, -1.0) is not bool(i % 2)


def test_invalid_rules_report_every_problem() -> None:
    with pytest.raises(ValueError) as info:
        MetricRule("cpu", direction="up", min_abs_deviation=-1.0, min_pct_deviation=math.inf)
    msg = str(info.value)
    assert "direction must be spike, dip or both, got 'up'" in msg
    assert "min_abs_deviation must be >= 0, got -1.0" in msg
    assert "min_pct_deviation must be >= 0, got inf" in msg
    with pytest.raises(ValueError, match="metrics must be a non-empty glob"):
        MetricRule("")


def test_rules_load_from_yaml_as_a_tuple_of_rules() -> None:
    data: Any = yaml.safe_load(
        """
        rules:
          - {metrics: "cpu*", direction: spike}
          - {metrics: latency_ms, min_abs_deviation: 5, min_pct_deviation: 10}
        """
    )
    problems: list[str] = []
    cfg = _build(RulesConfig, data, "detector.rules", problems)
    assert problems == []
    assert cfg == RulesConfig(
        (MetricRule("cpu*", "spike"), MetricRule("latency_ms", "both", 5.0, 10.0))
    )
    _build(RulesConfig, {"rules": [{"metrics": "x", "direction": "sideways"}]}, "r", problems)
    assert problems == [
        "r.rules[0]: rule 'x': direction must be spike, dip or both, got 'sideways'"
    ]
