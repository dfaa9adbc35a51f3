"""The largest state one entity can reach, whatever its input: one formula over the limits.

Every structure of an entity's state that grows with its input has a cap in the
configuration, so the encoded state (:func:`state.codec.encode` of
:meth:`udfs.core.detector.EntityDetector.snapshot`, plus the operator's journal) is at most

``S = F + W·E + P·V + R·A + (N_scorer + N_extremes + N_residual) · M + X + J``

with, in bytes (a character of a name is at most 4 bytes of UTF-8; a number at most 9):

- ``F`` = 48 KB: everything of fixed size (the calibrations' histograms, the threshold, the
  drift monitor of the score, the episode and its explanation of ``alerts.top_features``
  contributions, counters and clocks);
- ``E`` = ``parse.max_record_bytes + 16 · parse.max_metrics + 64``: one waiting event (its
  entity and names are at most its line's bytes; each value a 9-byte float and its framing),
  and ``W`` = ``lateness.max_buffered_events + lateness.clock_confirm_events`` events wait at
  most (for order, or held apart for a clock jump);
- ``V`` = 16,448: one waiting verdict (a verdict line is at most 16 KB), ``P`` = 64 wait;
- ``A`` = 4,112: one remembered alert id (at most 1,024 characters), ``R`` =
  ``feedback.remember``;
- ``M`` = ``4 · parse.max_metric_name_chars + 16``: one metric name, kept by the scorer (its
  first event's, at most ``parse.max_metrics``), by ``extremes`` (``extremes.max_metrics``)
  and by ``residual`` (``residual.max_metrics``); with the window features (models
  ``window`` or ``hst``, or features in score records) also ``features.max_metrics`` names;
- ``X``: the models' numbers, 9 bytes each: ``extremes`` ``2 · blocks + 4`` per metric,
  ``residual`` ``4 d² + 60 d + 200`` for ``d = residual.max_metrics``; the window features
  ``4 · buckets + 8`` per window and metric plus two for each of a window's 16 features;
  ``hst`` its node masses, ``trees · 2^(height+1) · 4`` bytes;
- ``J`` = ``(execution.snapshot_every - 1) · (parse.max_record_bytes + 64)``: the journal
  of raw lines between two snapshots.

At the defaults that is about 74 MB, nearly all of it ``W · E``: an entity that sends 1,024
maximal lines within its out-of-order bound. Streams that cannot trust their producers
should lower ``lateness.max_buffered_events`` or ``parse.max_record_bytes``; a steady entity
holds a few KB (see ``docs/architecture.md``).
"""

from __future__ import annotations

from udfs.core.config import DetectorConfig
from udfs.core.events import ParseConfig
from udfs.core.ordering import MAX_PENDING_VERDICTS

__all__ = ["largest_state_bytes"]

FIXED_BYTES = 48 * 1024
VERDICT_BYTES = 16_384 + 64
ALERT_ID_BYTES = 4 * 1_024 + 16
NUMBER_BYTES = 9


def largest_state_bytes(cfg: DetectorConfig, parse: ParseConfig, snapshot_every: int = 16) -> int:
    """``S`` of the module docstring for ``cfg`` and ``parse``.

    >>> round(largest_state_bytes(DetectorConfig(), ParseConfig()) / 1e6, 1)
    74.2
    """
    lateness = cfg.lateness
    event = parse.max_record_bytes + 16 * parse.max_metrics + 64
    waiting = (lateness.max_buffered_events + lateness.clock_confirm_events) * event
    verdicts = MAX_PENDING_VERDICTS * VERDICT_BYTES + cfg.feedback.remember * ALERT_ID_BYTES
    name = 4 * parse.max_metric_name_chars + 16
    ensemble = cfg.model.ensemble
    names = parse.max_metrics
    numbers = 0
    if "extremes" in ensemble:
        names += cfg.extremes.max_metrics
        numbers += (2 * cfg.extremes.blocks + 4) * cfg.extremes.max_metrics
    if "residual" in ensemble:
        d = cfg.residual.max_metrics
        names += d
        numbers += 4 * d * d + 60 * d + 200
    if "window" in ensemble or "hst" in ensemble:
        fc = cfg.features
        names += fc.max_metrics
        per_metric = sum(4 * w.buckets + 8 for w in fc.windows) + 2 * 16 * len(fc.windows)
        numbers += per_metric * fc.max_metrics
    masses = cfg.model.hst_trees * 2 ** (cfg.model.hst_height + 1) * 4 if "hst" in ensemble else 0
    journal = (snapshot_every - 1) * (parse.max_record_bytes + 64)
    return (
        FIXED_BYTES + waiting + verdicts + names * name + numbers * NUMBER_BYTES + masses + journal
    )
