"""``window``: the largest |z| of the event against the entity's sliding windows.

For every metric of the event and every window of :mod:`udfs.core.features` that is ready,
``z = (x - mean) / std`` (:meth:`udfs.core.models.base.Context.window_zs`: the std floored
at a share of the longest window's); the raw score is the largest ``|z|``. It sees a value
out of line with the recent past at several time scales at once; it knows nothing of the
time of day or of how metrics move together.

The model keeps no state of its own: the windows are the features' (the scoring stage keeps
them). It is *warm* once every metric of the event has its longest window covered by history:
before that its score is a placeholder the calibration does not learn.
"""

from __future__ import annotations

from typing import Any

from udfs.core.config import ModelConfig
from udfs.core.decision import Contribution
from udfs.core.models.base import Calibration, Context

__all__ = ["WindowModel"]


class WindowModel:
    """Largest |z| over the ready windows (see the module docstring).

    Examples
    --------
    >>> from udfs.core.models.base import Context
    >>> m = WindowModel(ModelConfig(), ("1m", "1h"))
    >>> ctx = Context(0, {"cpu": 9.0}, {"cpu.1m.mean": 5.0, "cpu.1m.std": 1.0},
    ...               {"cpu.1m": True, "cpu.1h": False}, (("1m", 60_000), ("1h", 3_600_000)), 0.5)
    >>> m.score_one(ctx), m.ready(ctx)
    (4.0, False)
    """

    name = "window"

    smoothing = 1

    __slots__ = ("calibration", "_longest")

    def __init__(self, cfg: ModelConfig, window_names: tuple[str, ...], longest: str = "") -> None:
        # log1p(|z|) on [0, 7] in 140 bins, a half-observation prior.
        self.calibration = Calibration(
            140, 0.05, cfg.calibration_half_life, 0.5, cfg.tail_scale, True, 0.0,
            cfg.min_calibration_events,
        )
        self._longest = longest or window_names[-1]

    def score_one(self, ctx: Context) -> float | None:
        best = 0.0
        any_ready = False
        for metric in ctx.metrics:
            for wz in ctx.window_zs(metric):
                if wz.ready:
                    any_ready = True
                    az = abs(wz.z)
                    if az > best:
                        best = az
        return best if any_ready else None

    def applies(self, ctx: Context) -> bool:
        return True

    def learns_calibration(self, ctx: Context) -> bool:
        return self.ready(ctx)

    def ready(self, ctx: Context) -> bool:
        """Every metric of the event has its longest window covered by history."""
        ready = ctx.ready
        longest = self._longest
        return all(ready.get(f"{metric}.{longest}", False) for metric in ctx.metrics)

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        """Nothing to learn: the windows learn every event (the scoring stage's features)."""

    def explain(self, ctx: Context) -> list[Contribution]:
        out = []
        for metric, x in ctx.metrics.items():
            for wz in ctx.window_zs(metric):
                if wz.ready:
                    out.append(Contribution(f"{wz.key}.zscore", metric, x, wz.mean, wz.z))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, data: dict[str, Any]) -> None:
        """Nothing to restore (see :meth:`snapshot`)."""
