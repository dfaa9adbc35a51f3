"""No single record can fail the caller: inputs given to a detector under a guard.

Whatever one record holds, it ends as scores and alerts, a late record, or a dead letter,
and the stream goes on. The parser never raises on input (:mod:`udfs.core.events`); this
module covers what it cannot foresee: anything that raises while a detector takes an input
(a bug, a value no check anticipated). Then

- the detector is rebuilt as it was before that input (``rebuild``: the caller knows how,
  from its last snapshot and the inputs since);
- the record to blame is refused as a dead letter ``internal_error`` whose detail is the
  exception's type and message. That is the input itself, or, when the exception came
  while scoring an event the order buffer held (an input releases the buffered events its
  timestamp makes safe), that buffered event: it is taken out of the buffer
  (:class:`Discard`) and the input is given again, so one bad event cannot refuse the good
  ones that come after it.

The outcome is a pure function of the inputs (the core is deterministic, an exception
included): the Flink operator (udfs/detect.py) and the replay (:mod:`udfs.core.replay`)
guard the same way, journal the :class:`Discard` steps like inputs, and agree record for
record.

Examples
--------
>>> class Flaky:  # a detector with a bug
...     processing = None
...     def on_event(self, ev):
...         raise ZeroDivisionError("a bug")
>>> det, out, steps = feed(Flaky(), Event("e", 0, {"x": 1.0}), lambda steps: "rebuilt")
>>> det, steps, out[0][1]["reason"], out[0][1]["detail"]
('rebuilt', [], 'internal_error', 'ZeroDivisionError: a bug')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from udfs.core.events import INTERNAL_ERROR, DeadLetter, Event
from udfs.core.feedback import Verdict

if TYPE_CHECKING:
    from udfs.core.detector import EntityDetector, Output

__all__ = ["END", "Discard", "Step", "apply", "feed", "internal_error"]

_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Discard:
    """A buffered event refused because it raised when another input released it."""

    event: Event


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


#: The end of the input (the detector's ``flush``).
END: Final = _End()

#: What a detector takes: an event, a verdict, a watermark (int), a discard, or the end.
Step = Event | Verdict | int | Discard | _End


def apply(det: EntityDetector, step: Step) -> list[Output]:
    """Give ``det`` one step, unguarded."""
    if isinstance(step, Event):
        return det.on_event(step)
    if isinstance(step, Verdict):
        return det.on_verdict(step)
    if isinstance(step, Discard):
        det.discard_buffered(step.event)
        return []
    if isinstance(step, _End):
        return det.flush()
    return det.on_watermark(step)


def internal_error(raw: str, exc: BaseException) -> DeadLetter:
    """The dead letter of a record whose processing raised ``exc``."""
    detail = f"{type(exc).__name__}: {exc}"
    return DeadLetter(INTERNAL_ERROR, None, raw, detail[:_DETAIL_CHARS])


def _raw(step: Step) -> str:
    if isinstance(step, Event):
        return step.to_json()
    if isinstance(step, Verdict):
        return repr(step)
    return f"watermark {step}" if isinstance(step, int) else repr(step)


def feed(
    det: EntityDetector,
    step: Step,
    rebuild: Callable[[Sequence[Step]], EntityDetector],
) -> tuple[EntityDetector, list[Output], list[Step]]:
    """Give ``det`` one step so that nothing can raise out of it.

    ``rebuild(steps)`` must return the detector as it was before ``step``, with ``steps``
    (discards) applied. Returns the detector to go on with (``det``, or a rebuilt one), the
    outputs, and the steps that took effect, in order, for the caller's journal: ``[step]``
    normally, ``[]`` when the step itself was refused, with a :class:`Discard` ahead of it for
    each buffered event refused on the way.
    """
    steps: list[Step] = []
    out: list[Output] = []
    while True:
        try:
            result = apply(det, step)
        except Exception as exc:  # the record is refused; the stream goes on
            culprit = det.processing
            det = rebuild(steps)
            if culprit is not None and culprit != step and det.discard_buffered(culprit):
                steps.append(Discard(culprit))
                out.append(_dead(culprit.to_json(), exc))
                continue  # each turn takes one event out of the buffer: it ends
            out.append(_dead(_raw(step), exc))
            return det, out, steps
        steps.append(step)
        out.extend(result)
        return det, out, steps


def _dead(raw: str, exc: BaseException) -> tuple[str, dict[str, Any]]:
    return ("dead_letter", internal_error(raw, exc).to_dict())
