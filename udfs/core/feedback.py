"""Operator verdicts on alerts, and what they do to an entity's threshold.

An on-call engineer who marks an alert ``false_positive`` is saying "this entity pages me for
nothing": :class:`ThresholdFeedback` then raises that entity's threshold by ``fp_step``
decades of rarity (an alert must be ``10**fp_step`` times rarer to get out), up to
``max_raise``. A ``true_positive`` lowers the raise by ``tp_step``, never below 0: feedback
only ever makes an entity *stricter* than its calibrated threshold, never looser, so a wrong
verdict cannot silence the detector's own judgement.

The raise decays back towards 0 over **event time** with ``half_life_ms``: the offset at time
``t`` of a raise ``r`` last changed at ``t0`` is ``r * 2 ** (-(t - t0) / half_life_ms)``.
Event time never runs backwards here: a verdict or query older than the last change is taken
at the time of the last change.

Verdicts are idempotent per ``alert_id``: the first verdict *applied* for an alert counts, and
any later one for the same alert (a duplicate delivery, a replay, a changed mind) is ignored.
The detector applies verdicts in their ``ts`` order (they wait for the entity's event time),
so of two verdicts on one alert the earlier-dated counts, whatever their arrival order. The last ``remember`` alert ids are kept, so memory is bounded.

A verdict is one JSON object::

    {"alert_id": "a3f2d2ab9c8e6b4b", "entity": "srv-1", "verdict": "false_positive",
     "reason": "planned load test", "ts": "2026-01-02T10:00:00Z"}

``reason`` is optional free text (default ``""``), ``ts`` optional (ISO-8601 or epoch ms).
:func:`parse_verdict` returns a :class:`Verdict` or a
:class:`~udfs.core.events.DeadLetter`; it never raises on input.

Examples
--------
>>> fb = ThresholdFeedback(FeedbackConfig(fp_step=0.25, half_life_ms=3_600_000))
>>> v = parse_verdict('{"alert_id": "a1", "entity": "srv-1", "verdict": "false_positive"}')
>>> fb.apply(v, 0), fb.apply(v, 0)  # the second delivery of the same verdict is ignored
(True, False)
>>> fb.offset(0), fb.offset(3_600_000)  # decades added to the threshold; half after 1 h
(0.25, 0.125)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from udfs.core.events import (
    ABSURD_TIMESTAMP,
    INVALID_JSON,
    NOT_AN_OBJECT,
    OVERSIZED,
    DeadLetter,
    Event,
    ParseConfig,
    entity_problem,
    parse_line,
    parse_timestamp,
)

__all__ = [
    "VERDICTS",
    "FeedbackConfig",
    "ThresholdFeedback",
    "Verdict",
    "parse_event_or_verdict",
    "parse_verdict",
]

VERDICTS = ("false_positive", "true_positive")

# Dead-letter reasons of verdict records (besides invalid_json, not_an_object, oversized).
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
BAD_VERDICT = "bad_verdict"

_MAX_VERDICT_BYTES = 16_384
_MAX_FIELD_CHARS = 1_024


@dataclass(frozen=True)
class Verdict:
    """An operator's judgement of one alert."""

    alert_id: str
    entity: str
    verdict: str
    reason: str = ""
    ts_ms: int | None = None

    @property
    def false_positive(self) -> bool:
        return self.verdict == "false_positive"


def parse_verdict(raw: str, cfg: ParseConfig | None = None) -> Verdict | DeadLetter:
    """Parse one verdict JSON line; never raises on input. ``cfg`` bounds the entity name
    and the timestamp as for events (:class:`~udfs.core.events.ParseConfig`).

    >>> parse_verdict('{"alert_id": "a1", "entity": "e", "verdict": "meh"}').reason
    'bad_verdict'
    >>> parse_verdict('{"alert_id": "a1", "verdict": "true_positive"}').field
    'entity'
    """
    if (
        len(raw) > _MAX_VERDICT_BYTES
        or len(raw.encode("utf-8", "surrogatepass")) > _MAX_VERDICT_BYTES
    ):
        return DeadLetter(
            OVERSIZED,
            None,
            raw[:_MAX_VERDICT_BYTES],
            f"record longer than {_MAX_VERDICT_BYTES} bytes",
        )
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return DeadLetter(INVALID_JSON, None, raw, str(exc)[:200])
    if not isinstance(obj, dict):
        return DeadLetter(
            NOT_AN_OBJECT, None, raw, f"expected a JSON object, got {type(obj).__name__}"
        )
    fields: dict[str, str] = {}
    for name in ("alert_id", "entity", "verdict"):
        value = obj.get(name)
        if value is None or value == "":
            return DeadLetter(MISSING_FIELD, name, raw, f"{name} is missing or empty")
        if not isinstance(value, str) or len(value) > _MAX_FIELD_CHARS:
            return DeadLetter(
                BAD_FIELD, name, raw, f"{name} must be a string of at most {_MAX_FIELD_CHARS} chars"
            )
        fields[name] = value
    cfg = cfg or ParseConfig()
    problem = entity_problem(fields["entity"], cfg)
    if problem:
        return DeadLetter(BAD_FIELD, "entity", raw, problem)
    if fields["verdict"] not in VERDICTS:
        return DeadLetter(
            BAD_VERDICT,
            "verdict",
            raw,
            f"verdict must be false_positive or true_positive, got {fields['verdict']!r}",
        )
    reason = obj.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        return DeadLetter(BAD_FIELD, "reason", raw, "reason must be a string")
    ts_ms = None
    if obj.get("ts") is not None:
        ts_ms = parse_timestamp(obj["ts"])
        if ts_ms is None:
            return DeadLetter(BAD_FIELD, "ts", raw, f"unparseable timestamp {obj['ts']!r:.200}")
        if not cfg.min_ts_ms <= ts_ms <= cfg.max_ts_ms:
            return DeadLetter(
                ABSURD_TIMESTAMP, "ts", raw, f"timestamp {ts_ms} ms is outside the plausible range"
            )
    return Verdict(fields["alert_id"], fields["entity"], fields["verdict"], reason, ts_ms)


def parse_event_or_verdict(
    raw: str, cfg: ParseConfig, now_ms: int | None = None
) -> Event | Verdict | DeadLetter:
    """One line of an input that may carry verdicts among the events; never raises.

    A JSON object with a ``verdict`` key and no ``metrics`` key is a verdict (a bad one is a dead
    letter with the verdict's reason); anything else is parsed as an event.

    >>> cfg = ParseConfig()
    >>> type(parse_event_or_verdict('{"alert_id": "a", "entity": "e", "verdict": "true_positive"}', cfg)).__name__
    'Verdict'
    >>> type(parse_event_or_verdict('{"entity": "e", "ts": "2026-01-01T00:00:00Z", "metrics": {"verdict": 1}}', cfg)).__name__
    'Event'
    """
    if '"verdict"' in raw:  # cheap test first: most lines are events
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and "verdict" in obj and "metrics" not in obj:
            return parse_verdict(raw, cfg)
    return parse_line(raw, cfg, now_ms)


@dataclass(frozen=True)
class FeedbackConfig:
    """How operator verdicts move an entity's threshold.

    Parameters
    ----------
    fp_step
        Decades of rarity added to the entity's threshold per false positive.
    max_raise
        Largest total raise, in decades.
    tp_step
        Decades removed from the raise per true positive (the raise never goes below 0).
    half_life_ms
        Event time after which a raise has decayed to half (default one week).
    remember
        How many recent alert ids an entity remembers to ignore repeated verdicts.
    """

    fp_step: float = 0.25
    max_raise: float = 1.5
    tp_step: float = 0.1
    half_life_ms: int = 7 * 86_400_000
    remember: int = 64

    def __post_init__(self) -> None:
        problems = []
        for name in ("fp_step", "max_raise", "tp_step"):
            value = getattr(self, name)
            if not value >= 0:
                problems.append(f"{name} must be >= 0, got {value}")
        if self.half_life_ms <= 0:
            problems.append(f"half_life_ms must be > 0, got {self.half_life_ms}")
        if self.remember < 1:
            problems.append(f"remember must be >= 1, got {self.remember}")
        if problems:
            raise ValueError("; ".join(problems))


class ThresholdFeedback:
    """The verdict-driven threshold raise of one entity.

    Parameters
    ----------
    cfg
        The feedback configuration.

    Examples
    --------
    >>> fb = ThresholdFeedback(FeedbackConfig(fp_step=0.5, max_raise=1.0, tp_step=0.25))
    >>> for i, kind in enumerate(["false_positive"] * 3 + ["true_positive"]):
    ...     _ = fb.apply(Verdict(f"a{i}", "srv-1", kind), 0)
    ...     print(kind, fb.offset(0))
    false_positive 0.5
    false_positive 1.0
    false_positive 1.0
    true_positive 0.75
    """

    __slots__ = ("cfg", "_raise", "_ts_ms", "_seen")

    def __init__(self, cfg: FeedbackConfig) -> None:
        self.cfg = cfg
        self._raise = 0.0
        self._ts_ms = 0
        self._seen: list[str] = []

    def apply(self, verdict: Verdict, ts_ms: int) -> bool:
        """Take ``verdict`` into account at event time ``ts_ms``; False if already counted."""
        aid = verdict.alert_id
        seen = self._seen
        if aid in seen:
            return False
        seen.append(aid)
        if len(seen) > self.cfg.remember:
            del seen[: len(seen) - self.cfg.remember]
        cfg = self.cfg
        now = ts_ms if ts_ms > self._ts_ms else self._ts_ms
        current = self.offset(now)
        if verdict.verdict == "false_positive":
            current = min(current + cfg.fp_step, cfg.max_raise)
        else:
            current = max(current - cfg.tp_step, 0.0)
        self._raise = current
        self._ts_ms = now
        return True

    def offset(self, ts_ms: int) -> float:
        """Decades of rarity to add to the entity's threshold at event time ``ts_ms`` (>= 0)."""
        r = self._raise
        if r == 0.0:
            return 0.0
        dt = ts_ms - self._ts_ms
        if dt <= 0:
            return r
        return float(r * 2.0 ** (-dt / self.cfg.half_life_ms))

    @property
    def remembered(self) -> tuple[str, ...]:
        """Alert ids whose verdict has been counted (oldest first)."""
        return tuple(self._seen)

    def snapshot(self) -> tuple[float, int, list[str]]:
        """The state as plain data: ``(raise, ts_ms of the last change, remembered ids)``."""
        return (self._raise, self._ts_ms, list(self._seen))

    def restore(self, snap: tuple[Any, ...] | list[Any]) -> None:
        raise_, ts_ms, seen = snap
        self._raise = float(raise_)
        self._ts_ms = int(ts_ms)
        self._seen = list(seen)[-self.cfg.remember :]
