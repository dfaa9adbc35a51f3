"""The models of the scoring stage, one per module, behind one interface
(:mod:`udfs.core.models.base`).

================  ===========================================================================
name              what it scores
================  ===========================================================================
``extremes``      a value beyond the metric's range over its recent past
``residual``      the distance of the event from its seasonal baseline, jointly over the
                  entity's metrics (Mahalanobis; one metric: its z)
``window``        the largest |z| of the event against the entity's sliding windows
``hst``           Half-Space Trees over the squashed window z's and ratios (equal to River's)
================  ===========================================================================

``model.ensemble`` names the models an entity runs, ``model.custom`` adds models the user
brings (:mod:`udfs.core.models.external`: River estimators, offline-trained artifacts);
:func:`build_models` builds them.
"""

from __future__ import annotations

import math

from udfs.core.config import MODEL_NAMES, DetectorConfig
from udfs.core.models.base import Calibration, Model
from udfs.core.models.extremes import ExtremesModel
from udfs.core.models.residual import ResidualModel
from udfs.core.models.trees import TreesModel
from udfs.core.models.window import WindowModel

__all__ = ["MODEL_NAMES", "build_models"]


def build_models(cfg: DetectorConfig, entity: str = "") -> list[Model]:
    """The models of ``cfg.model.ensemble``, in that order, then ``cfg.model.custom``'s, fresh
    for ``entity``."""
    longest = max(cfg.features.windows, key=lambda w: w.length_ms).name
    names = tuple(w.name for w in cfg.features.windows)
    mc = cfg.model
    # log1p(raw) on 120 bins of 0.1, the newest score's weight as prior (a young entity
    # cannot be sure of anything), one more decade per doubling beyond anything seen.
    extend = 1.0 / math.log(2.0)
    ex = cfg.extremes
    out: list[Model] = []
    for name in mc.ensemble:
        if name == "window":
            out.append(WindowModel(mc, names, longest))
        elif name == "hst":
            out.append(TreesModel(cfg, longest))
        elif name == "extremes":
            cal = Calibration(120, 0.1, mc.calibration_half_life, 1.0, 0.0, True, extend, mc.min_calibration_events)
            out.append(ExtremesModel(ex, cal))
        elif name == "residual":
            cal = Calibration(120, 0.1, mc.calibration_half_life, 1.0, 0.0, True, extend, 0)
            out.append(ResidualModel(cfg.residual, cal))
        else:  # (ModelConfig validates the names)
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODEL_NAMES)})")
    if mc.custom:
        from udfs.core.models.external import build_custom

        for spec in mc.custom:
            out.append(
                build_custom(spec, entity, mc.calibration_half_life, mc.min_calibration_events, mc.learn_anomalies)
            )
    return out
