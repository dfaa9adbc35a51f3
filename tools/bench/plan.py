"""How long each part runs."""

from __future__ import annotations

import dataclasses

# -- the plan ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each part runs. Sizes are derived from the plain loop's measured rate."""

    quick: bool
    entities: int = 16
    interval_ms: int = 20_000
    metrics: tuple[int, ...] = (1, 4, 16)
    process_metrics: tuple[int, ...] = (1, 4, 16)
    # seconds of marginal work per job (at the plain loop's rate) and of the first size
    job_seconds: float = 25.0
    base_seconds: float = 5.0
    repeats: int = 2
    headline_repeats: int = 3
    naive_seconds: float = 20.0
    latency_seconds: float = 40.0
    latency_warmup_s: float = 5.0
    state_hours: float = 26.0
    checkpoint_entities: tuple[int, ...] = (1_000, 10_000)
    profile_events: int = 6000
    cluster: bool = True
    cluster_events: int = 400_000
    ceiling_events: int = 60_000
    cluster_repeats: int = 3
    scale_entities: int = 100_000
    floor_seconds: float = 10.0
    embedded_events: int = 20_000
    embedded_reps: int = 3
    custom_events: int = 20_000

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            process_metrics=(4,),
            job_seconds=3.0,
            base_seconds=1.0,
            repeats=1,
            headline_repeats=1,
            naive_seconds=10.0,
            latency_seconds=12.0,
            latency_warmup_s=2.0,
            state_hours=25.0,
            checkpoint_entities=(1_000,),
            profile_events=2000,
            cluster=False,
            floor_seconds=3.0,
            embedded_events=8000,
            embedded_reps=2,
            custom_events=4_000,
        )

    def sizes(self, rate: float) -> tuple[int, int]:
        """``(N1, N2)`` for a stage expected to run at ``rate`` events per second."""
        n1 = max(300, int(rate * self.base_seconds))
        n2 = n1 + max(1000, int(rate * self.job_seconds))
        step = self.entities
        return n1 // step * step, n2 // step * step


