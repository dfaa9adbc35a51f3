"""Per-metric alerting rules: which deviations are worth a page, and in which direction.

A detector finds what is *unusual*; an operator knows what is *actionable*. A CPU that drops
is rarely an incident, a latency that moves by 2 ms never is. :class:`RulesConfig` holds an
ordered list of :class:`MetricRule`; the **first** rule whose ``metrics`` glob matches the
metric name decides; a metric that no rule matches is always allowed. A rule allows a
contributing feature (``actual`` against ``expected``) when:

- its direction is wanted: ``spike`` needs ``actual > expected``, ``dip`` needs
  ``actual < expected``, ``both`` takes either (and equality);
- the deviation ``|actual - expected|`` is at least ``min_abs_deviation``;
- the deviation is at least ``min_pct_deviation / 100 * |expected|`` (with ``expected == 0``
  every deviation passes this test).

Both bounds are inclusive: a deviation exactly at the bound is allowed.

Matching is :func:`fnmatch.fnmatchcase` (``*``, ``?``, ``[abc]``; case-sensitive, and ``*``
also matches dots, so ``disk.*`` covers ``disk.read.bytes``). The rule that applies to a metric
name is looked up once per (configuration, metric) and cached.

Examples
--------
>>> cfg = RulesConfig(
...     rules=(
...         MetricRule("cpu", direction="spike"),
...         MetricRule("latency_*", min_abs_deviation=5.0, min_pct_deviation=10.0),
...     )
... )
>>> allowed(cfg, "cpu", actual=12.0, expected=40.0, z=-6.0)  # a CPU dip: not actionable
False
>>> allowed(cfg, "latency_ms", actual=104.0, expected=100.0, z=8.0)  # 4 ms < 5 ms
False
>>> allowed(cfg, "latency_ms", actual=112.0, expected=100.0, z=9.0)  # 12 ms, 12 %
True
>>> allowed(cfg, "error_rate", actual=0.1, expected=0.5, z=-3.0)  # no rule: allowed
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase

from udfs.core.checks import glob_problem

__all__ = ["DIRECTIONS", "MetricRule", "RulesConfig", "allowed", "rule_for"]

DIRECTIONS = ("spike", "dip", "both")


@dataclass(frozen=True)
class MetricRule:
    """What makes a deviation of the metrics matching ``metrics`` worth alerting on.

    Parameters
    ----------
    metrics
        A glob on the metric name (:func:`fnmatch.fnmatchcase`), e.g. ``"latency_*"``.
    direction
        ``spike`` (only ``actual > expected``), ``dip`` (only ``actual < expected``) or
        ``both``.
    min_abs_deviation
        Smallest ``|actual - expected|`` that counts, in the metric's unit (0: any).
    min_pct_deviation
        Smallest ``|actual - expected|`` that counts, in percent of ``|expected|`` (0: any).
    """

    metrics: str
    direction: str = "both"
    min_abs_deviation: float = 0.0
    min_pct_deviation: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        glob = glob_problem("metrics", self.metrics)
        if glob:
            problems.append(glob)
        if self.direction not in DIRECTIONS:
            problems.append(
                f"rule {self.metrics!r}: direction must be spike, dip or both, "
                f"got {self.direction!r}"
            )
        for name in ("min_abs_deviation", "min_pct_deviation"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"rule {self.metrics!r}: {name} must be >= 0, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class RulesConfig:
    """Ordered alerting rules; the first rule matching a metric name wins, none means allow.

    Parameters
    ----------
    rules
        :class:`MetricRule` entries, tried in order.
    """

    rules: tuple[MetricRule, ...] = ()


# Compiled lookups: id(cfg) -> (cfg, {metric: rule or None}). Holding ``cfg`` keeps its id
# from being reused while the entry lives, so this is a cache keyed by (cfg, metric) that does
# not rehash the whole configuration on every call (hashing a frozen dataclass with ten rules
# costs ~5 us; this lookup ~0.2 us). Bounded: a configuration's entry is dropped after
# _MAX_METRICS distinct names, the whole cache after _MAX_CONFIGS configurations.
_CACHE: dict[int, tuple[RulesConfig, dict[str, MetricRule | None]]] = {}
_MAX_CONFIGS = 16
_MAX_METRICS = 10_000


def rule_for(cfg: RulesConfig, metric: str) -> MetricRule | None:
    """The rule that decides for ``metric`` (the first match), or ``None``.

    >>> cfg = RulesConfig((MetricRule("cpu*", "spike"), MetricRule("*", "both", 1.0)))
    >>> rule_for(cfg, "cpu_user").direction, rule_for(cfg, "mem").min_abs_deviation
    ('spike', 1.0)
    >>> rule_for(RulesConfig(), "mem") is None
    True
    """
    entry = _CACHE.get(id(cfg))
    if entry is None or entry[0] is not cfg:
        if len(_CACHE) >= _MAX_CONFIGS:
            _CACHE.clear()
        entry = (cfg, {})
        _CACHE[id(cfg)] = entry
    by_metric = entry[1]
    try:
        return by_metric[metric]
    except KeyError:
        pass
    if len(by_metric) >= _MAX_METRICS:
        by_metric.clear()
    found = None
    for rule in cfg.rules:
        if fnmatchcase(metric, rule.metrics):
            found = rule
            break
    by_metric[metric] = found
    return found


def allowed(cfg: RulesConfig, metric: str, actual: float, expected: float, z: float) -> bool:
    """Whether a deviation of ``metric`` (``actual`` against ``expected``) may alert.

    ``z`` is the feature's z-score; it has the sign of ``actual - expected`` and decides the
    direction only when ``actual - expected`` is 0 or NaN (a z of 0 then matches ``both``
    only). A deviation that is NaN is never suppressed by the size bounds: missing information
    does not hide an alert.
    """
    if not cfg.rules:
        return True
    rule = rule_for(cfg, metric)
    if rule is None:
        return True
    diff = actual - expected
    if rule.direction != "both":
        sign = diff if diff != 0.0 and diff == diff else z
        if rule.direction == "spike" and not sign > 0.0:
            return False
        if rule.direction == "dip" and not sign < 0.0:
            return False
    dev = abs(diff)
    if dev < rule.min_abs_deviation:
        return False
    # dev * 100 against pct * |expected|: no rounding of pct / 100 at the boundary.
    return not dev * 100.0 < rule.min_pct_deviation * abs(expected)
