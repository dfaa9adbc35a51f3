"""Fakes of the Flink runtime (keyed state, timers, metrics, contexts) and the operator
harness over them, shared by the adapter tests; plus the small configuration and event
streams those tests drive it with."""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

from pyflink.datastream import TimeDomain
from pyflink.datastream.state import ValueStateDescriptor

from udfs.core.alerts import AlertConfig
from udfs.core.config import DetectorConfig, LatenessConfig, ModelConfig, ThresholdConfig
from udfs.core.events import Event
from udfs.core.features import FeatureConfig, WindowSpec
from udfs.core.feedback import Verdict
from udfs.detect import DetectAnomalies
from udfs.parse import detect_input
from udfs.tags import DEAD_LETTER_TAG, DRIFT_TAG, LATE_TAG, SCORES_TAG

T0 = 1_767_225_600_000
SEC = 1_000
BOUND = 5_000
TTL = 600_000
LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1

CFG = DetectorConfig(
    lateness=LatenessConfig(max_out_of_orderness_ms=BOUND, idle_ttl_ms=TTL),
    features=FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 5), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(("10s", "1m"),),
        robust_windows=("10s",),
        max_gap_ms=30_000,
        min_count=3,
    ),
    model=ModelConfig(
        ensemble=("window", "hst"), combine="max", hst_trees=5, hst_height=6, hst_window=50, min_calibration_events=30
    ),
    threshold=ThresholdConfig(min_events=200, target_alert_rate=0.001),
    alerts=AlertConfig(quiet_period_ms=30_000, cooldown_ms=60_000),
)


# -- fakes of the Flink runtime ------------------------------------------------------------


class Backend:
    """Keyed state and event-time timers of one operator instance."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.state: dict[tuple[str, str], bytes] = {}
        self.timers: dict[str, set[int]] = {}  # Flink keeps one timer per key and timestamp
        self.watermark = LONG_MIN
        self.descriptors: list[ValueStateDescriptor] = []
        self.writes: list[Any] = []  # every value written, in order
        self.reads = 0
        self.timer_calls = 0  # registrations and deletions


class FakeValueState:
    def __init__(self, backend: Backend, name: str) -> None:
        self._b = backend
        self._name = name

    def _slot(self) -> tuple[str, str]:
        assert self._b.key is not None, "keyed state used outside a keyed context"
        return (self._name, self._b.key)

    def value(self) -> Any:
        self._b.reads += 1
        data = self._b.state.get(self._slot())
        return None if data is None else pickle.loads(data)  # PICKLED_BYTE_ARRAY

    def update(self, value: Any) -> None:
        self._b.state[self._slot()] = pickle.dumps(value)
        self._b.writes.append(value)

    def clear(self) -> None:
        self._b.state.pop(self._slot(), None)


class FakeCounter:
    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n

    def dec(self, n: int = 1) -> None:
        self.count -= n


class FakeDistribution:
    def __init__(self) -> None:
        self.values: list[int] = []

    def update(self, value: int) -> None:
        self.values.append(value)


class FakeMetricGroup:
    """Records what the operator registers, by dotted name."""

    def __init__(self, registry: dict[str, Any], prefix: str = "") -> None:
        self._r = registry
        self._p = prefix

    def add_group(self, name: str) -> FakeMetricGroup:
        return FakeMetricGroup(self._r, f"{self._p}{name}.")

    def counter(self, name: str) -> FakeCounter:
        return self._r.setdefault(self._p + name, FakeCounter())

    def distribution(self, name: str) -> FakeDistribution:
        return self._r.setdefault(self._p + name, FakeDistribution())

    def gauge(self, name: str, fn: Any) -> None:
        raise AssertionError("no Python gauges: Flink's metric thread would call into PEMJA")


class FakeRuntimeContext:
    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self.metrics: dict[str, Any] = {}

    def get_metrics_group(self) -> FakeMetricGroup:
        return FakeMetricGroup(self.metrics)

    def get_state(self, descriptor: ValueStateDescriptor) -> FakeValueState:
        assert isinstance(descriptor, ValueStateDescriptor)
        self._b.descriptors.append(descriptor)
        return FakeValueState(self._b, descriptor.name)


class FakeTimerService:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def current_watermark(self) -> int:
        return self._b.watermark

    def register_event_time_timer(self, ts: int) -> None:
        assert self._b.key is not None
        self._b.timer_calls += 1
        self._b.timers.setdefault(self._b.key, set()).add(ts)

    def delete_event_time_timer(self, ts: int) -> None:
        assert self._b.key is not None
        self._b.timer_calls += 1
        self._b.timers.get(self._b.key, set()).discard(ts)

    def register_processing_time_timer(self, ts: int) -> None:
        raise AssertionError("the detector must not use processing time")


class FakeContext:
    def __init__(self, backend: Backend, timestamp: int) -> None:
        self._b = backend
        self._ts = timestamp

    def get_current_key(self) -> str | None:
        return self._b.key

    def timer_service(self) -> FakeTimerService:
        return FakeTimerService(self._b)

    def timestamp(self) -> int:
        return self._ts

    def time_domain(self) -> TimeDomain:
        return TimeDomain.EVENT_TIME


class Harness:
    """Drives the operator like Flink: elements, then watermarks that fire due timers."""

    def __init__(self, cfg: DetectorConfig = CFG, snapshot_every: int = 16, cache_size: int = 4096) -> None:
        self.cfg = cfg
        self.b = Backend()
        self.fn = DetectAnomalies(
            cfg, emit_scores=True, snapshot_every=snapshot_every, cache_size=cache_size
        )
        self.ctx = FakeRuntimeContext(self.b)
        self.fn.open(self.ctx)
        self.out: list[tuple[str, dict[str, Any]]] = []
        self.max_ts = LONG_MIN
        self.max_timers_seen = 0

    def restore_from(self, other: Harness) -> None:
        """Go on from ``other``'s keyed state and timers, as a restore hands them over: a
        fresh operator instance (new nonce, empty cache) opened on them."""
        self.b = other.b
        self.ctx = FakeRuntimeContext(self.b)
        self.fn.open(self.ctx)
        self.out = list(other.out)
        self.max_ts = other.max_ts

    def _collect(self, produced: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        got = []
        for item in produced:
            if isinstance(item, str):
                got.append(("alert", json.loads(item)))
            else:
                tag, payload = item
                kinds = {
                    id(LATE_TAG): "late",
                    id(SCORES_TAG): "score",
                    id(DRIFT_TAG): "drift",
                    id(DEAD_LETTER_TAG): "dead_letter",
                }
                kind = kinds[id(tag)]
                got.append((kind, json.loads(payload)))
        self.out += got
        for key, timers in self.b.timers.items():
            assert len(timers) <= 2, (key, sorted(timers))
            self.max_timers_seen = max(self.max_timers_seen, len(timers))
        return got

    def element(self, ev: Event, watermark: bool = True) -> list[tuple[str, dict[str, Any]]]:
        self.b.key = ev.entity
        got = self._collect(
            list(
                self.fn.process_element(detect_input(ev), FakeContext(self.b, ev.ts_ms))
            )
        )
        self.max_ts = max(self.max_ts, ev.ts_ms)
        if watermark:
            got += self.advance(self.max_ts - BOUND - 1)  # Flink's bounded out-of-orderness
        return got

    def group(self, key: str, lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Lines of one key in one call, as the line batcher hands them over (a list)."""
        self.b.key = key
        return self._collect(list(self.fn.process_element((key, list(lines)), FakeContext(self.b, 0))))

    def verdict(self, v: Verdict) -> list[tuple[str, dict[str, Any]]]:
        """A verdict as udfs/parse.py emits it, keyed by its entity."""
        self.b.key = v.entity
        ts = v.ts_ms or 0
        return self._collect(
            list(self.fn.process_element(detect_input(v), FakeContext(self.b, ts)))
        )

    def advance(self, watermark: int) -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        if watermark <= self.b.watermark:
            return got
        self.b.watermark = watermark
        while True:
            due = [
                (ts, key)
                for key, ts_set in self.b.timers.items()
                for ts in ts_set
                if ts <= watermark
            ]
            if not due:
                return got
            ts, key = min(due)
            self.b.timers[key].discard(ts)
            self.b.key = key
            got += self._collect(list(self.fn.on_timer(ts, FakeContext(self.b, ts))))

    def end_of_input(self) -> list[tuple[str, dict[str, Any]]]:
        return self.advance(LONG_MAX)

    def stored(self, entity: str) -> Any:
        data = self.b.state.get(("entity-detector", entity))
        return None if data is None else pickle.loads(data)

    def timers(self, entity: str) -> set[int]:
        return set(self.b.timers.get(entity, set()))


# -- helpers -------------------------------------------------------------------------------


def stream(
    n: int,
    entity: str,
    seed: int,
    start: int = T0,
    jitter: bool = False,
    spike: int | None = None,
) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        metrics = {"cpu": round(50 + rng.gauss(0, 1), 3), "mem": round(30 + rng.gauss(0, 1), 3)}
        if i == spike:
            metrics["cpu"] += 30.0
        ts = start + i * SEC + (rng.randrange(1, 999) if jitter else 0)
        out.append(Event(entity, ts, metrics))
    return out


def shuffle_within_bound(events: list[Event], rng: random.Random) -> list[Event]:
    return sorted(events, key=lambda e: e.ts_ms + rng.uniform(0, BOUND))


def normalised(kind: str, rec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A replay record as it looks after the operator's JSON (scores without features)."""
    if kind == "score":
        rec = {k: v for k, v in rec.items() if k != "features"}
    return kind, json.loads(json.dumps(rec))


def per_entity_and_kind(
    outputs: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[str, str], list[Any]]:
    """Each entity's scores, alerts and late records, each in order.

    Watermarks release buffered events earlier than a replay without watermarks, so a score
    may leave before or after a late record of the same entity, and a late record's
    ``frontier_ms`` reflects the watermark; the late *event* is the same.
    """
    grouped: dict[tuple[str, str], list[Any]] = {}
    for kind, rec in outputs:
        item = (rec["ts_ms"], rec["event"]) if kind == "late" else rec
        grouped.setdefault((rec["entity"], kind), []).append(item)
    return grouped


# -- tests ---------------------------------------------------------------------------------
