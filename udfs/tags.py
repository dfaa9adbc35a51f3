"""Side-output tags and the record types that cross operator boundaries."""

from __future__ import annotations

from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream import OutputTag


def event_type() -> TypeInformation:
    """A parsed event between operators: (entity, ts_ms, payload), the payload the bytes of a
    pickled Python object (udfs/parse.py handoff), the form of the detector's journal entries.
    A new instance per call (see :func:`summary_late_tag`)."""
    return Types.TUPLE([Types.STRING(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


EVENT_TYPE = event_type()
# What the detect operator is given: (entity, raw line), the entity as Flink read it when it
# keyed the line (job/pipeline.py, the front), the line parsed by the operator itself. A tuple,
# not a row: PyFlink turns a row into Python in 5.7 us and this pair of rows in 3.3 us.
LINE_TYPE = Types.TUPLE([Types.STRING(), Types.STRING()])
# The same with its key in front, the shape Flink's Java key selector reads (job/pipeline.py
# key_by_entity): Row(entity, (entity, line)).
KEYED_LINE_TYPE = Types.ROW([Types.STRING(), LINE_TYPE])
# That row and its Flink timestamp, the shape Flink's Java timestamp assigner for Python
# streams reads (job/pipeline.py with_event_time): what the front emits.
TIMED_KEYED_LINE_TYPE = Types.TUPLE([KEYED_LINE_TYPE, Types.LONG()])
# An entity's lines grouped by the batcher (job/pipeline.py batch_lines): (entity, [line, ...]),
# and the same keyed, Row(entity, (entity, [line, ...])).
BATCH_TYPE = Types.TUPLE([Types.STRING(), Types.BASIC_ARRAY(Types.STRING())])
KEYED_BATCH_TYPE = Types.ROW([Types.STRING(), BATCH_TYPE])

DEAD_LETTER_TAG = OutputTag("dead-letter", Types.STRING())
LATE_TAG = OutputTag("late", Types.STRING())
SCORES_TAG = OutputTag("scores", Types.STRING())
DRIFT_TAG = OutputTag("drift", Types.STRING())
# Events behind Flink's watermark for the summary windows (still scored by the detector).
def summary_late_tag() -> OutputTag:
    """A new tag per pipeline: it is pickled with the window operator, and a type that
    already holds Java objects (after one job was built) cannot be."""
    return OutputTag("summary-late", event_type())
