"""The replay oracle: the detection core run in plain Python over a whole input.

``replay(records, cfg)`` is what the Flink job computes, without Flink: one
:class:`~udfs.core.detector.EntityDetector` per entity, fed in input order, flushed at the
end, each input under the same guard as in the job (:mod:`udfs.core.guard`). Flink tests
assert that the job's outputs equal the replay's.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence

from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector, Output
from udfs.core.events import DeadLetter, Event
from udfs.core.feedback import Verdict
from udfs.core.guard import END, Step, apply, feed

__all__ = ["replay"]

# Inputs between two snapshots of an entity (what a guarded input is rebuilt from).
_SNAPSHOT_EVERY = 256


class _Guarded:
    """One entity's detector, its last snapshot and the steps since: what ``feed`` needs
    to rebuild it as it was before an input."""

    __slots__ = ("cfg", "det", "base", "since")

    def __init__(self, entity: str, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.det = EntityDetector(entity, cfg)
        self.base: bytes | None = None
        self.since: list[Step] = []

    def _rebuild(self, steps: Sequence[Step]) -> EntityDetector:
        entity = self.det.entity
        if self.base is None:
            det = EntityDetector(entity, self.cfg)
        else:
            det = EntityDetector.restore(entity, self.cfg, pickle.loads(self.base))
        for step in (*self.since, *steps):
            apply(det, step)
        return det

    def give(self, step: Step) -> list[Output]:
        self.det, out, steps = feed(self.det, step, self._rebuild)
        self.since.extend(steps)
        if len(self.since) >= _SNAPSHOT_EVERY:
            self.base = pickle.dumps(self.det.snapshot(), protocol=5)
            self.since = []
        return out


def replay(
    records: Iterable[Event | DeadLetter | Verdict], cfg: DetectorConfig
) -> Iterator[Output]:
    """Yield every output of the core for ``records`` in processing order.

    Dead letters pass through as ``("dead_letter", record)``; then come the detectors'
    ``score``, ``alert``, ``late``, ``drift`` and ``dead_letter`` outputs, and at the end of
    input what the flush releases, entity by entity in order of first appearance.
    """
    entities: dict[str, _Guarded] = {}
    for rec in records:
        if isinstance(rec, DeadLetter):
            yield ("dead_letter", rec.to_dict())
            continue
        # A verdict may arrive before the entity's events, as in the job; it waits for its
        # ts like an event (EntityDetector.on_verdict).
        guarded = entities.get(rec.entity)
        if guarded is None:
            guarded = entities[rec.entity] = _Guarded(rec.entity, cfg)
        yield from guarded.give(rec)
    for guarded in entities.values():
        yield from guarded.give(END)
