"""What every model of the detector's scoring stage is: one small interface.

A model is one online anomaly model of one entity, in the spirit of River's estimators:

- ``score_one(ctx) -> float | None``: the raw score of the event, from the model's state
  *before* it learns the event (higher is more unusual; ``None`` when the model has not
  seen enough of the entity yet, or does not apply to it), with ``applies(ctx)``,
  ``ready(ctx)`` and ``learns_calibration(ctx)`` saying which, and ``smoothing`` the span of
  the exponential smoothing of the score the ranking reads (1: none);
- ``learn_one(ctx, unusual)``: learn the event; ``unusual`` is the detector's judgement
  of it (its combined rarity reached the threshold), for models that keep anomalies out
  of their baseline;
- ``explain(ctx) -> [Contribution]``: which metrics made the score, with the value, what
  the model expected and how far apart (in the model's own units of spread);
- ``snapshot() -> dict`` and ``restore(data)``: the model's state as named plain data.

The scoring stage (:mod:`udfs.core.scoring`) holds a list of models, turns each raw score
into *rarity* against the entity's own past (a calibration per model, described by the
model's :attr:`calibration`), and combines the rarities. Adding a model is one module in
this package and one entry in :data:`udfs.core.models.REGISTRY`.

:class:`Context` is what a model reads about one event: its time and values, and the
entity's window features (:mod:`udfs.core.features`) with every window z computed once.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

from udfs.core.decision import Contribution

__all__ = ["Calibration", "Context", "Model", "WindowZ"]


class Calibration(NamedTuple):
    """How the scoring stage calibrates a model's raw score into rarity.

    The raw score ``s`` is placed at ``log1p(s)`` (at ``s`` itself when not ``log``) on
    ``bins`` bins of ``width`` from 0 (a decayed histogram,
    :class:`udfs.core.calibration.DecayedHistogram`); rarity is ``-log10`` of the share of
    past scores at or above it, with ``prior`` of the newest observation's weight at the
    top and a half life of ``half_life`` scores. Beyond the highest score seen, either an
    exponential tail of ``tail_scale`` (in the histogram's coordinate) or ``extrapolate``
    more decades per unit of it. The entity is not ready before the calibration holds
    ``min_updates`` scores.
    """

    bins: int
    width: float
    half_life: float
    prior: float
    tail_scale: float
    log: bool = True
    extrapolate: float = 0.0
    min_updates: int = 0


class WindowZ(NamedTuple):
    """One window's reading of one metric: its readiness key (``metric.window``), the
    window's length, mean and standard deviation, and the z of the event's value (0 when
    the window is not ready)."""

    key: str
    length_ms: int
    ready: bool
    mean: float
    std: float
    z: float


class Context:
    """One event as the models read it.

    Parameters
    ----------
    ts
        Event time, epoch milliseconds.
    metrics
        The event's values by metric name.
    values, ready
        The entity's window features of the event (computed from the history before it)
        and their readiness, as :meth:`udfs.core.features.EntityFeatures.update` returns.
    windows
        The configured windows as ``(name, length_ms)``, and ``std_floor_fraction``
        (see :func:`window_zs`).
    """

    __slots__ = ("ts", "metrics", "values", "ready", "_windows", "_floor", "_zs")

    def __init__(
        self,
        ts: int,
        metrics: dict[str, float],
        values: dict[str, float],
        ready: dict[str, bool],
        windows: tuple[tuple[str, int], ...],
        std_floor_fraction: float,
    ) -> None:
        self.ts = ts
        self.metrics = metrics
        self.values = values
        self.ready = ready
        self._windows = windows
        self._floor = std_floor_fraction
        self._zs: dict[str, list[WindowZ]] = {}

    def window_zs(self, metric: str) -> list[WindowZ]:
        """The z of the event's value of ``metric`` against each of its windows, computed
        once per event: ``(x - mean) / std``, the std floored at ``std_floor_fraction``
        times the std of the metric's longest ready window (a short window's std comes from
        a handful of events and alone would make every blip look extreme) and at ``1e-3 *
        |mean|`` (so a change from a flat line still shows), the z capped at +-1000."""
        zs = self._zs.get(metric)
        if zs is not None:
            return zs
        x = self.metrics[metric]
        values = self.values
        ready = self.ready
        rows = []
        best_len = -1
        noise = 0.0
        for name, length in self._windows:
            key = f"{metric}.{name}"
            ok = ready.get(key, False)
            rows.append((key, length, ok))
            if ok and length > best_len:
                s = values[key + ".std"]
                if s == s:
                    best_len = length
                    noise = s
        noise *= self._floor
        zs = []
        for key, length, ok in rows:
            if not ok:
                zs.append(WindowZ(key, length, False, 0.0, 0.0, 0.0))
                continue
            mean = values[key + ".mean"]
            std = values[key + ".std"]
            zs.append(WindowZ(key, length, True, mean, std, _z(x, mean, std, noise)))
        self._zs[metric] = zs
        return zs


_Z_CAP = 1e3


def _z(x: float, mean: float, std: float, noise_floor: float) -> float:
    floor = 1e-3 * abs(mean) + 1e-9
    if noise_floor > floor:
        floor = noise_floor
    s = std if std == std and std > floor else floor
    z = (x - mean) / s
    if z > _Z_CAP:
        return _Z_CAP
    if z < -_Z_CAP:
        return -_Z_CAP
    return z


class Model(Protocol):
    """The interface every model implements (see the module docstring)."""

    name: str
    calibration: Calibration
    smoothing: int

    def score_one(self, ctx: Context) -> float | None: ...

    def applies(self, ctx: Context) -> bool:
        """Whether the model applies to the entity at all: one that applies but did not
        score keeps the entity from being ready."""
        ...

    def ready(self, ctx: Context) -> bool:
        """Whether the model has seen enough of the entity for its score to count toward an
        alert (the scoring stage also waits for the calibration's ``min_updates``)."""
        ...

    def learns_calibration(self, ctx: Context) -> bool:
        """Whether this event's score may train the model's calibration."""
        ...

    def learn_one(self, ctx: Context, unusual: bool) -> None: ...

    def explain(self, ctx: Context) -> list[Contribution]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, data: dict[str, Any]) -> None: ...


def finite(x: float) -> bool:
    """Whether ``x`` is a finite float."""
    return not (math.isnan(x) or math.isinf(x))
