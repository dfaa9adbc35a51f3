"""Side-output tags and the record types that cross operator boundaries."""

from __future__ import annotations

from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream import OutputTag


def event_type() -> TypeInformation:
    """A parsed event between operators: (entity, ts_ms, payload), the payload the bytes of a
    pickled Python object (udfs/parse.py handoff), kept as bytes by the detector's journal.
    A new instance per call (see :func:`summary_late_tag`)."""
    return Types.TUPLE([Types.STRING(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


EVENT_TYPE = event_type()
# The same with its key in front, the shape Flink's Java key selector reads (job/pipeline.py
# key_by_entity): Row(entity, event).
KEYED_EVENT_TYPE = Types.ROW([Types.STRING(), EVENT_TYPE])
# What the parser emits: that row and its Flink timestamp, the shape Flink's Java timestamp
# assigner for Python streams reads (job/pipeline.py with_event_time).
TIMED_KEYED_EVENT_TYPE = Types.TUPLE([KEYED_EVENT_TYPE, Types.LONG()])

DEAD_LETTER_TAG = OutputTag("dead-letter", Types.STRING())
LATE_TAG = OutputTag("late", Types.STRING())
SCORES_TAG = OutputTag("scores", Types.STRING())
DRIFT_TAG = OutputTag("drift", Types.STRING())
# Events behind Flink's watermark for the summary windows (still scored by the detector).
def summary_late_tag() -> OutputTag:
    """A new tag per pipeline: it is pickled with the window operator, and a type that
    already holds Java objects (after one job was built) cannot be."""
    return OutputTag("summary-late", event_type())
