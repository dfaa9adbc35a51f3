"""The replay oracle: the detection core run in plain Python over a whole input.

``replay(records, cfg)`` is what the Flink job computes, without Flink: one
:class:`~udfs.core.detector.EntityDetector` per entity, fed in input order, flushed at the
end. Flink tests assert that the job's outputs equal the replay's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector, Output
from udfs.core.events import DeadLetter, Event
from udfs.core.feedback import Verdict

__all__ = ["replay"]


def replay(
    records: Iterable[Event | DeadLetter | Verdict], cfg: DetectorConfig
) -> Iterator[Output]:
    """Yield every output of the core for ``records`` in processing order.

    Dead letters pass through as ``("dead_letter", record)``; then come the detectors'
    ``score``, ``alert`` and ``late`` outputs, and at the end of input what the flush
    releases, entity by entity in order of first appearance.
    """
    detectors: dict[str, EntityDetector] = {}
    for rec in records:
        if isinstance(rec, DeadLetter):
            yield ("dead_letter", rec.to_dict())
            continue
        if isinstance(rec, Verdict):  # waits for its ts like an event (EntityDetector.on_verdict)
            vdet = detectors.get(rec.entity)
            if vdet is None:  # as the job does: a verdict may arrive before the entity's events
                vdet = detectors[rec.entity] = EntityDetector(rec.entity, cfg)
            yield from vdet.on_verdict(rec)
            continue
        det = detectors.get(rec.entity)
        if det is None:
            det = detectors[rec.entity] = EntityDetector(rec.entity, cfg)
        yield from det.on_event(rec)
    for det in detectors.values():
        yield from det.flush()
