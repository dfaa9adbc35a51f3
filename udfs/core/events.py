"""Input events: the contract, the parser, and the dead letters it produces.

An event is one JSON object per line::

    {"entity": "srv-1", "ts": "2026-01-01T00:00:00Z", "metrics": {"cpu": 51.2}, "id": "e-1"}

``ts`` is an ISO-8601 string (a missing offset means UTC) or epoch milliseconds (an integer,
or a string of digits). ``metrics`` maps metric names to finite numbers. ``id`` is optional.

Bad input is data, not an exception: :func:`parse_line` returns either an :class:`Event` or a
:class:`DeadLetter` that names the reason, the field and the raw record. The parser never
raises on input.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_EPOCH_MS = re.compile(r"-?[0-9]+")

__all__ = [
    "DeadLetter",
    "Event",
    "ParseConfig",
    "entity_problem",
    "parse_line",
    "parse_object",
    "parse_timestamp",
]

# Dead-letter reasons, stable strings that dashboards and tests can count on.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
OVERSIZED = "oversized"
MISSING_ENTITY = "missing_entity"
BAD_ENTITY = "bad_entity"
MISSING_TIMESTAMP = "missing_timestamp"
BAD_TIMESTAMP = "bad_timestamp"
ABSURD_TIMESTAMP = "absurd_timestamp"
NO_METRICS = "no_metrics"
NON_NUMERIC_METRIC = "non_numeric_metric"
NON_FINITE_METRIC = "non_finite_metric"
TOO_MANY_METRICS = "too_many_metrics"
BAD_ID = "bad_id"
BAD_METRIC_NAME = "bad_metric_name"
# Far ahead of its entity's own clock, and the entity's next events did not follow
# (udfs/core/detector.py, ``lateness.max_clock_jump_ms``).
CLOCK_JUMP = "clock_jump"
# The event's timestamp is further ahead of the wall clock than ``max_future_skew_ms`` allows
# (live jobs only: off by default, so replays stay deterministic).
FUTURE_TIMESTAMP = "future_timestamp"
# Raised while parsing or scoring one record (udfs/core/guard.py): the record is refused and
# the entity's state is left as it was before it.
INTERNAL_ERROR = "internal_error"
# The parser reads another entity than Flink's JSON functions did when they keyed the line
# (the job's front, job/pipeline.py): the line reached another key's state, so it is not used.
AMBIGUOUS_ENTITY = "ambiguous_entity"


@dataclass(frozen=True)
class ParseConfig:
    """Limits that separate a plausible event from bad input.

    Parameters
    ----------
    max_record_bytes
        A raw record longer than this (UTF-8 bytes) is a dead letter (``oversized``).
    min_ts_ms, max_ts_ms
        Timestamps outside ``[min_ts_ms, max_ts_ms]`` are absurd (default 2000-01-01 to
        2100-01-01). Epoch *seconds* sent by mistake land here rather than in 1970.
    max_metrics
        Most metrics one event may carry.
    max_entity_chars
        Longest entity name.
    max_metric_name_chars
        Longest metric name (a metric name is part of every feature name the entity keeps).
    max_future_skew_ms
        When > 0, an event dated more than this far ahead of the wall clock of the worker
        that parses it is a dead letter (``future_timestamp``). For live streams (Kafka),
        where a host with a wrong clock should be refused at once; 0 (the default) for
        replays and backfills, whose results must not depend on when they run.
    """

    max_record_bytes: int = 65_536
    min_ts_ms: int = 946_684_800_000
    max_ts_ms: int = 4_102_444_800_000
    max_metrics: int = 256
    max_entity_chars: int = 256
    max_metric_name_chars: int = 128
    max_future_skew_ms: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.max_record_bytes <= 0:
            problems.append(f"max_record_bytes must be > 0, got {self.max_record_bytes}")
        if self.min_ts_ms >= self.max_ts_ms:
            problems.append(f"min_ts_ms ({self.min_ts_ms}) must be < max_ts_ms ({self.max_ts_ms})")
        if self.max_metrics <= 0:
            problems.append(f"max_metrics must be > 0, got {self.max_metrics}")
        if self.max_entity_chars <= 0:
            problems.append(f"max_entity_chars must be > 0, got {self.max_entity_chars}")
        if self.max_metric_name_chars <= 0:
            problems.append(
                f"max_metric_name_chars must be > 0, got {self.max_metric_name_chars}"
            )
        if self.max_future_skew_ms < 0:
            problems.append(f"max_future_skew_ms must be >= 0, got {self.max_future_skew_ms}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Event:
    """One valid observation of one entity at one instant (``ts_ms``: UTC epoch ms)."""

    entity: str
    ts_ms: int
    metrics: dict[str, float]
    id: str | None = None

    def to_json(self) -> str:
        """The event as a canonical JSON line (the input format, normalised)."""
        obj: dict[str, Any] = {"entity": self.entity, "ts": self.ts_ms, "metrics": self.metrics}
        if self.id is not None:
            obj["id"] = self.id
        return json.dumps(obj, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be used, with why (``reason``), where (``field``) and what."""

    reason: str
    field: str | None
    raw: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "field": self.field, "detail": self.detail, "raw": self.raw}


def parse_timestamp(value: Any) -> int | None:
    """Epoch milliseconds from an ISO-8601 string, an integer, or a string of digits.

    Returns ``None`` when the value is not a timestamp at all (a string of more than 19
    digits included: no plausible time has that many). A naive ISO time means UTC.

    Examples
    --------
    >>> parse_timestamp("2026-01-01T00:00:00Z")
    1767225600000
    >>> parse_timestamp(1767225600000), parse_timestamp("1767225600000")
    (1767225600000, 1767225600000)
    >>> parse_timestamp("yesterday") is None, parse_timestamp(True) is None
    (True, True)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return int(value)
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if _EPOCH_MS.fullmatch(text):
        # int() refuses more than 4,300 digits (ValueError): bounded first.
        return int(text) if len(text.lstrip("-")) <= 19 else None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # Integer arithmetic on the timedelta: no float rounding of the milliseconds.
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _is_text(s: str) -> bool:
    """Whether ``s`` is Unicode text: JSON's ``\\ud800`` escapes decode to lone surrogates,
    which no UTF-8 or UTF-16 encoder takes."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def entity_problem(entity: str, cfg: ParseConfig) -> str | None:
    """Why the string ``entity`` cannot name an entity (events and verdicts alike), or None.
    An entity names a Flink key (a Java string): one that is not Unicode text crashed the job
    when PyFlink handed it to Java."""
    if not entity.strip() or len(entity) > cfg.max_entity_chars:
        return "entity is blank or too long"
    if not _is_text(entity):
        return "entity is not Unicode text (a lone surrogate)"
    return None


def format_timestamp(ts_ms: int) -> str:
    """ISO-8601 UTC with millisecond precision, e.g. ``2026-01-01T00:00:00.000Z``."""
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def parse_object(
    obj: Any, raw: str, cfg: ParseConfig, now_ms: int | None = None
) -> Event | DeadLetter:
    """Validate an already-decoded JSON value against the event contract.

    ``now_ms``: the wall clock, for ``cfg.max_future_skew_ms`` (ignored when that is 0 or
    ``now_ms`` is None)."""
    if not isinstance(obj, dict):
        return DeadLetter(
            NOT_AN_OBJECT, None, raw, f"expected a JSON object, got {type(obj).__name__}"
        )
    entity = obj.get("entity")
    if entity is None or entity == "":
        return DeadLetter(MISSING_ENTITY, "entity", raw, "entity is missing or empty")
    if not isinstance(entity, str):
        return DeadLetter(
            BAD_ENTITY, "entity", raw, f"entity must be a string, got {type(entity).__name__}"
        )
    problem = entity_problem(entity, cfg)
    if problem:
        return DeadLetter(BAD_ENTITY, "entity", raw, problem)
    if "ts" not in obj or obj["ts"] is None:
        return DeadLetter(MISSING_TIMESTAMP, "ts", raw, "ts is missing")
    ts_ms = parse_timestamp(obj["ts"])
    if ts_ms is None:
        return DeadLetter(BAD_TIMESTAMP, "ts", raw, f"unparseable timestamp {obj['ts']!r:.200}")
    if not cfg.min_ts_ms <= ts_ms <= cfg.max_ts_ms:
        return DeadLetter(
            ABSURD_TIMESTAMP, "ts", raw, f"timestamp {ts_ms} ms is outside the plausible range"
        )
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return DeadLetter(NO_METRICS, "metrics", raw, "metrics must be a non-empty object")
    if len(metrics) > cfg.max_metrics:
        return DeadLetter(
            TOO_MANY_METRICS, "metrics", raw, f"{len(metrics)} metrics > {cfg.max_metrics}"
        )
    skew = cfg.max_future_skew_ms
    if skew and now_ms is not None and ts_ms > now_ms + skew:
        return DeadLetter(
            FUTURE_TIMESTAMP,
            "ts",
            raw,
            f"timestamp {ts_ms} ms is {ts_ms - now_ms} ms ahead of the wall clock "
            f"(parse.max_future_skew_ms = {skew})",
        )
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not name:
            return DeadLetter(NON_NUMERIC_METRIC, "metrics.", raw, "metric name is empty")
        if len(name) > cfg.max_metric_name_chars or not _is_text(name):
            return DeadLetter(
                BAD_METRIC_NAME,
                "metrics",
                raw,
                f"metric name longer than {cfg.max_metric_name_chars} characters or not "
                "Unicode text",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return DeadLetter(
                NON_NUMERIC_METRIC, f"metrics.{name}", raw, f"value {value!r} is not a number"
            )
        try:
            f = float(value)
        except OverflowError:
            return DeadLetter(
                NON_FINITE_METRIC, f"metrics.{name}", raw, "integer too large for a float"
            )
        if not math.isfinite(f):
            return DeadLetter(
                NON_FINITE_METRIC, f"metrics.{name}", raw, f"value {value!r} is not finite"
            )
        clean[name] = f
    event_id = obj.get("id")
    if event_id is not None and not isinstance(event_id, (str, int)):
        return DeadLetter(BAD_ID, "id", raw, "id must be a string or an integer")
    return Event(entity, ts_ms, clean, None if event_id is None else str(event_id))


def parse_line(raw: str, cfg: ParseConfig, now_ms: int | None = None) -> Event | DeadLetter:
    """Parse one JSON line; never raises on input (``now_ms``: see :func:`parse_object`)."""
    limit = cfg.max_record_bytes
    # A code point is at most 4 bytes of UTF-8: a line of at most limit / 4 characters is
    # within the limit without encoding it.
    if len(raw) > limit or (
        len(raw) * 4 > limit and len(raw.encode("utf-8", "surrogatepass")) > limit
    ):
        return DeadLetter(
            OVERSIZED,
            None,
            raw[:limit],
            f"record longer than {limit} bytes",
        )
    try:
        # NaN / Infinity literals decode to floats here; the field checks then reject them
        # against the field they stand in (a metric, the timestamp, ...).
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return DeadLetter(INVALID_JSON, None, raw, str(exc)[:200])
    return parse_object(obj, raw, cfg, now_ms)
