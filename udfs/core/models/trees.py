"""``hst``: Half-Space Trees (Tan et al., IJCAI 2011) over the window features.

The trees (:mod:`udfs.core.hst`, equal to River's ``HalfSpaceTrees`` score for score) take,
per metric of the entity's first event, each window's z squashed into [0, 1]
(``0.5 + 0.5 * tanh(z / z_squash)``, 0.5 while the window is not ready) and each window
ratio squashed the same way (``tanh(log ratio)``): a mass-based view of the joint feature
space. Scored before it learns; an event judged unusual does not train them (unless
``model.learn_anomalies``), so an anomaly does not become normal. Every entity shares the
tree structure (built from ``model.seed``); an entity keeps only its node masses.
"""

from __future__ import annotations

import math
from typing import Any

from udfs.core.config import DetectorConfig
from udfs.core.decision import Contribution
from udfs.core.hst import CompactHST, HSTStructure, get_structure
from udfs.core.models.base import Calibration, Context

__all__ = ["TreesModel"]


class TreesModel:
    """Half-Space Trees over squashed window z's and ratios (see the module docstring)."""

    name = "hst"

    smoothing = 1

    __slots__ = ("cfg", "calibration", "metrics", "hst", "_perm", "_squash", "_longest", "_vec")

    def __init__(self, cfg: DetectorConfig, longest: str) -> None:
        self.cfg = cfg
        m = cfg.model
        # The raw score itself (in [0, 1]) on 100 bins, a half-observation prior, a short tail.
        self.calibration = Calibration(
            100, 0.01, m.calibration_half_life, 0.5, 0.02, False, 0.0, m.min_calibration_events
        )
        self.metrics: tuple[str, ...] = ()
        self.hst: CompactHST | None = None
        self._perm: tuple[int, ...] = ()
        self._squash = 1.0 / m.z_squash
        self._longest = longest
        self._vec: list[float] = []

    def _build(self, metrics: tuple[str, ...]) -> HSTStructure:
        cfg = self.cfg
        names = []
        for metric in metrics:
            for w in cfg.features.windows:
                names.append(f"{metric}.{w.name}.z")
            for short, long_ in cfg.features.ratio_pairs:
                names.append(f"{metric}.{short}_{long_}.ratio")
        mc = cfg.model
        structure = get_structure(names, mc.hst_trees, mc.hst_height, mc.seed)
        pos = {name: i for i, name in enumerate(names)}
        self._perm = tuple(pos[name] for name in structure.feature_names)
        self.metrics = metrics
        return structure

    def _vector(self, ctx: Context) -> list[float]:
        squash = self._squash
        vec: list[float] = []
        ratio_pairs = self.cfg.features.ratio_pairs
        for metric in self.metrics:
            x = ctx.metrics.get(metric)
            if x is None:
                vec.extend(0.5 for _ in self.cfg.features.windows)
            else:
                for wz in ctx.window_zs(metric):
                    vec.append(0.5 + 0.5 * math.tanh(wz.z * squash) if wz.ready else 0.5)
            for short, long_ in ratio_pairs:
                r = ctx.values.get(f"{metric}.{short}_{long_}.ratio", 1.0) if x is not None else 1.0
                lr = math.log(r) if r > 0.0 else 0.0
                vec.append(0.5 + 0.5 * math.tanh(lr))
        return [vec[i] for i in self._perm]

    def score_one(self, ctx: Context) -> float | None:
        if self.hst is None:  # the entity's first event fixes the trees' metrics
            self.hst = CompactHST(self._build(tuple(sorted(ctx.metrics))), self.cfg.model.hst_window)
        self._vec = self._vector(ctx)
        raw = self.hst.score_vec(self._vec)
        return raw if self._window_warm(ctx) and not self.hst.first_window else None

    def _window_warm(self, ctx: Context) -> bool:
        ready = ctx.ready
        return all(ready.get(f"{metric}.{self._longest}", False) for metric in ctx.metrics)

    def applies(self, ctx: Context) -> bool:
        return True

    def ready(self, ctx: Context) -> bool:
        return self.hst is not None and self._window_warm(ctx) and not self.hst.first_window

    def learns_calibration(self, ctx: Context) -> bool:
        return self.ready(ctx)

    def learn_one(self, ctx: Context, unusual: bool) -> None:
        if self.hst is None or not self._window_warm(ctx):
            return
        if self.cfg.model.learn_anomalies or not unusual:
            self.hst.learn_vec(self._vec)

    def explain(self, ctx: Context) -> list[Contribution]:
        return []  # the trees say how rare, not which metric: the other models explain

    def snapshot(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "masses": None if self.hst is None else self.hst.to_bytes()}

    def restore(self, data: dict[str, Any]) -> None:
        metrics = tuple(data["metrics"])
        if not metrics:
            return
        structure = self._build(metrics)
        masses = data["masses"]
        window = self.cfg.model.hst_window
        self.hst = (
            CompactHST.from_bytes(structure, window, masses)
            if masses is not None
            else CompactHST(structure, window)
        )
