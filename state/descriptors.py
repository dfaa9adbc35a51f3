"""The pyflink keyed-state descriptors of the detector, with their end.

One ``ValueState`` per entity holds ``(release_timer_ms, watch_timer_ms, write_token,
detector_bytes, journal, config_stamp[, pending])``:
a snapshot of the detector's complete state encoded by :mod:`state.codec`, the journal of
what the detector was given since that snapshot (events and verdicts pickled,
``udfs.parse.handoff``, or as JSON strings in state written before that; and
the watermarks of its timers: at most ``execution.snapshot_every - 1`` entries; state written
before journals existed has four fields and no journal; the stamp records the configuration
the journal was written under, ``udfs.core.config.config_stamp``), plus the two timers the adapter has
registered (the watch timer is the stale deadline or the idle deadline, see
:mod:`udfs.detect`; state written before it existed holds the idle deadline there, which
works as a watch timer too). ``pending``, when present, holds events not yet given to the
detector (deferred on a cache miss, :mod:`udfs.detect`; at most ``MAX_PENDING``, payloads
as in the journal), applied in order at the entity's next load. It is written while the
entity's key is being processed, on every event, so every checkpoint holds exactly the state
that produced the outputs before it: the snapshot with its journal replayed, and the events
whose records have not left yet.

Every entity's state has two ends:

- the event-time idle timer (``detector.lateness.idle_ttl_ms``): cleared when the watermark
  passes the entity's newest timestamp plus the TTL (deterministic, tested);
- a processing-time state TTL as a backstop (``state_ttl_ms``, default 7 days, off with 0),
  for a stream whose watermark stops moving. It never fires in a healthy job.
"""

from __future__ import annotations

from pyflink.common.time import Time
from pyflink.common.typeinfo import Types
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

__all__ = ["entity_state_descriptor"]

ENTITY_STATE = "entity-detector"


def entity_state_descriptor(state_ttl_ms: int = 7 * 86_400_000) -> ValueStateDescriptor:
    desc = ValueStateDescriptor(ENTITY_STATE, Types.PICKLED_BYTE_ARRAY())
    if state_ttl_ms > 0:
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(state_ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            # Cleanup named explicitly: PyFlink's default background cleanup builds a RocksDB
            # compaction-filter strategy with Duration.of_days(30), a py4j call, and a
            # TaskManager's thread-mode (PEMJA) interpreter has no py4j gateway: on a real
            # cluster open() failed with FileNotFoundError (trying to launch one).
            .disable_cleanup_in_background()
            .cleanup_incrementally(10, False)
            .cleanup_full_snapshot()
            .build()
        )
        desc.enable_time_to_live(ttl)
    return desc
