"""Settings of the drift and health monitor (:class:`udfs.core.drift.DriftMonitor`): what
each means is in ``docs/drift.md``; the configuration keys are ``drift.*``."""

from __future__ import annotations

from dataclasses import dataclass

from udfs.core.checks import glob_problem

__all__ = ["DriftConfig"]

_ACTIONS = ("report", "reset")


def check(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class DriftConfig:
    """Configuration of :class:`udfs.core.drift.DriftMonitor` (what each setting does: ``docs/drift.md``).

    Parameters
    ----------
    enabled
        When false, :meth:`DriftMonitor.update` does nothing and returns ``[]``.
    watch_metrics
        Also watch each raw metric value (PSI and KS), not only the anomaly score. Off by
        default: a metric with a daily cycle compared over a window shorter than a day drifts
        every day by construction, so the records say nothing the models do not already
        follow; the score is what tells whether the detector still fits the entity.
    warmup_events
        Values of a series ignored before its reference starts (2000: an entity's young
        phase, ``detector.threshold.min_events``, while its calibration is still settling
        and its score distribution moves for that reason alone).
    reference_events
        Values of a series that build its reference (half for the sample and the bin edges,
        half for the reference bin counts); a multiple of ``2 * ks_samples``.
    refresh_events
        ``0``: the reference is rebuilt only on demand. Otherwise every ``refresh_events``
        updates the monitor rebuilds it (no check until it is complete again, so at least
        ``warmup_events + reference_events + window_events``).
    window_events
        Length of the sliding current window, in values of the series; a multiple of
        ``check_every`` and of ``ks_samples``.
    check_every
        PSI and KS are computed every ``check_every`` values of a series (at most 65535, a
        multiple of ``window_events / ks_samples``).
    psi_bins
        Number of PSI bins, cut at the reference sample's quantiles ``k / psi_bins``.
    psi_threshold
        A PSI above this is a drift (0.1 - 0.25 is the usual "moderate" band).
    ks_threshold
        A two-sample KS statistic ``D`` above this is a drift.
    ks_samples
        Values kept on each side for KS (``K``), at least ``psi_bins``.
    page_hinkley_min_instances, page_hinkley_delta, page_hinkley_threshold, page_hinkley_alpha
        River's ``PageHinkley(min_instances, delta, threshold, alpha, mode="both")`` on the
        score.
    page_hinkley_direction
        ``"up"`` (default): only a rise of the score is a drift record (more events look
        unusual than before: a new regime, or models that no longer fit); a fall is the
        models fitting better, and an entity's score falls for days while it learns its
        daily cycle. ``"both"``: either.
    clear_ratio
        A statistic in drift has cleared when a check finds it below
        ``clear_ratio * threshold``; only then can it be reported again.
    action
        ``"report"``, or ``"reset"``: drift records ask the caller to reset the entity's
        models, and the monitor rebuilds its reference.
    silent_after_events
        Events without an alert, after a score drift, that make a ``silent_detector``.
    stale_spread
        A current-window score IQR below this makes a ``stale_model`` (``0`` disables it).
    reset_epoch, reset_entities
        The operator command to refresh references: raising ``reset_epoch`` (a live change,
        see ``udfs/core/live.py``) makes every entity matching the glob ``reset_entities``
        rebuild its reference once, on its next event, with a ``drift_reference_reset``
        record. Entities created under an epoch start with it.

    Raises
    ------
    ValueError
        Naming every invalid field and its value, all at once.

    Examples
    --------
    >>> DriftConfig(window_events=1000, check_every=300)
    Traceback (most recent call last):
    ...
    ValueError: window_events=1000 must be a multiple of check_every=300; window_events=1000 must be a multiple of ks_samples=128
    """

    enabled: bool = True
    watch_metrics: bool = False
    warmup_events: int = 2_000
    reference_events: int = 2048
    refresh_events: int = 0
    window_events: int = 1024
    check_every: int = 128
    psi_bins: int = 10
    psi_threshold: float = 0.2
    ks_threshold: float = 0.35
    ks_samples: int = 128
    page_hinkley_min_instances: int = 30
    page_hinkley_delta: float = 0.05
    page_hinkley_threshold: float = 20.0
    page_hinkley_alpha: float = 1.0
    page_hinkley_direction: str = "up"
    clear_ratio: float = 0.5
    action: str = "report"
    silent_after_events: int = 1000
    stale_spread: float = 0.01
    reset_epoch: int = 0
    reset_entities: str = "*"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.enabled, bool):
            problems.append(f"enabled must be a bool, got {self.enabled!r}")
        if self.page_hinkley_direction not in ("up", "both"):
            problems.append(
                f"page_hinkley_direction must be up or both, got {self.page_hinkley_direction!r}"
            )
        if not isinstance(self.watch_metrics, bool):
            problems.append(f"watch_metrics must be a bool, got {self.watch_metrics!r}")
        ints = {
            "warmup_events": (self.warmup_events, 0),
            "reference_events": (self.reference_events, 1),
            "refresh_events": (self.refresh_events, 0),
            "window_events": (self.window_events, 1),
            "check_every": (self.check_every, 1),
            "psi_bins": (self.psi_bins, 2),
            "ks_samples": (self.ks_samples, 1),
            "page_hinkley_min_instances": (self.page_hinkley_min_instances, 1),
            "silent_after_events": (self.silent_after_events, 1),
        }
        sizes_ok = True
        for name, (count, low) in ints.items():
            if not _is_int(count) or count < low:
                problems.append(f"{name} must be an int >= {low}, got {count!r}")
                sizes_ok = sizes_ok and name in (
                    "page_hinkley_min_instances",
                    "silent_after_events",
                )
        positive = {
            "psi_threshold": self.psi_threshold,
            "page_hinkley_threshold": self.page_hinkley_threshold,
        }
        for name, value in positive.items():
            if not _is_number(value) or not value > 0:
                problems.append(f"{name} must be > 0, got {value!r}")
        in_unit = {
            "ks_threshold": self.ks_threshold,
            "page_hinkley_alpha": self.page_hinkley_alpha,
            "clear_ratio": self.clear_ratio,
        }
        for name, value in in_unit.items():
            if not _is_number(value) or not 0 < value <= 1:
                problems.append(f"{name} must be in (0, 1], got {value!r}")
        for name, value in (
            ("page_hinkley_delta", self.page_hinkley_delta),
            ("stale_spread", self.stale_spread),
        ):
            if not _is_number(value) or not value >= 0:
                problems.append(f"{name} must be >= 0, got {value!r}")
        if self.action not in _ACTIONS:
            problems.append(f"action must be one of {', '.join(_ACTIONS)}; got {self.action!r}")
        glob = glob_problem("reset_entities", self.reset_entities)
        if glob:
            problems.append(glob)
        if sizes_ok:  # how the window sizes fit together, when they are sizes at all
            self._check_layout(problems)
        check(problems)

    def _check_layout(self, problems: list[str]) -> None:
        ref, win, ce, k = (
            self.reference_events,
            self.window_events,
            self.check_every,
            self.ks_samples,
        )
        if ref % (2 * k):
            problems.append(f"reference_events={ref} must be a multiple of 2 * ks_samples={2 * k}")
        if win % ce:
            problems.append(f"window_events={win} must be a multiple of check_every={ce}")
        if win % k:
            problems.append(f"window_events={win} must be a multiple of ks_samples={k}")
        elif ce % (win // k):
            problems.append(
                f"check_every={ce} must be a multiple of window_events / ks_samples={win // k}"
            )
        if ce > 65535:
            problems.append(f"check_every must be <= 65535, got {ce}")
        if k < self.psi_bins:
            problems.append(f"ks_samples={k} must be >= psi_bins={self.psi_bins}")
        least = self.warmup_events + ref + win
        if self.refresh_events and self.refresh_events < least:
            problems.append(
                f"refresh_events={self.refresh_events} must be 0 or >= warmup_events + "
                f"reference_events + window_events = {least}"
            )
