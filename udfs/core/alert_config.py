"""How decisions become alerts: :class:`AlertConfig` (exported by :mod:`udfs.core.alerts`).

A module of its own so that the compiled copy of :mod:`udfs.core.alerts`
(scripts/build_native.py) and the rest of the job share one configuration class: a class
compiled by mypyc checks that its arguments are its own module's classes, and a frozen
dataclass compiled by mypyc cannot be unpickled where PyFlink loads the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

from udfs.core.checks import template_problem

__all__ = ["AlertConfig", "URL_PLACEHOLDERS"]

#: What ``runbook_url`` and ``dashboard_url`` may name, as ``{entity}`` and so on.
URL_PLACEHOLDERS = ("entity", "alert_id", "start_ts", "ts")


@dataclass(frozen=True)
class AlertConfig:
    """How decisions become alerts.

    Parameters
    ----------
    quiet_events
        An open episode resolves once this many consecutive events of the entity were not
        anomalous (and ``quiet_period_ms`` has passed): counted in the entity's own events,
        so the same setting suits a sensor every second and a server every five minutes.
    quiet_period_ms
        Event time without an anomalous event before an open episode may resolve (0: the
        count alone decides).
    cooldown_ms
        After an episode resolves, new anomalies of the entity of the same or a lower
        severity than its peak are suppressed (and counted) for this long; a higher severity
        opens a new episode.
    max_alerts_per_hour
        Most ``open`` records per entity per hour of event time; the rest are suppressed
        and counted.
    hysteresis_decades
        While an episode is open, an event continues it when its rarity is within this many
        decades below the threshold, so one incident stays one episode while the baselines
        begin to absorb it.
    top_features
        How many contributing features an alert explains.
    runbook_url, dashboard_url
        Templates filled with ``{entity}``, ``{alert_id}``, ``{start_ts}`` and ``{ts}``
        (:data:`URL_PLACEHOLDERS`; ``{{`` and ``}}`` for braces): any other field is refused
        when the configuration is built.
    global_max_per_hour
        Most paging records (``open``, ``escalate``) of the whole job in any sliding hour of
        event time (``0``: no global limit). A suppressed ``open`` takes its episode with it;
        every record held back is counted on the next one out (``suppressed_global``) and a
        storm is reported once as an ``alert_storm`` health record
        (:class:`udfs.core.ratelimit.GlobalAlertGate`, one operator instance for the job).
    """

    quiet_events: int = 12
    quiet_period_ms: int = 0
    cooldown_ms: int = 0
    max_alerts_per_hour: int = 6
    hysteresis_decades: float = 0.25
    top_features: int = 3
    runbook_url: str = "https://runbooks.example.com/anomaly?entity={entity}"
    dashboard_url: str = "https://grafana.example.com/d/anomaly?var-entity={entity}&from={start_ts}"
    global_max_per_hour: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.quiet_events < 0:
            problems.append(f"quiet_events must be >= 0, got {self.quiet_events}")
        if self.quiet_period_ms < 0:
            problems.append(f"quiet_period_ms must be >= 0, got {self.quiet_period_ms}")
        if self.cooldown_ms < 0:
            problems.append(f"cooldown_ms must be >= 0, got {self.cooldown_ms}")
        if self.max_alerts_per_hour < 1:
            problems.append(f"max_alerts_per_hour must be >= 1, got {self.max_alerts_per_hour}")
        if self.hysteresis_decades < 0:
            problems.append(f"hysteresis_decades must be >= 0, got {self.hysteresis_decades}")
        if self.top_features < 1:
            problems.append(f"top_features must be >= 1, got {self.top_features}")
        if self.global_max_per_hour < 0:
            problems.append(f"global_max_per_hour must be >= 0, got {self.global_max_per_hour}")
        for name in ("runbook_url", "dashboard_url"):
            problem = template_problem(name, getattr(self, name), URL_PLACEHOLDERS)
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
