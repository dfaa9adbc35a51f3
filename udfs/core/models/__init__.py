"""The models of the scoring stage, one per module, behind one interface
(:mod:`udfs.core.models.base`).

================  ===========================================================================
name              what it scores
================  ===========================================================================
``extremes``      a value beyond the metric's range over its recent past
``seasonal``      a value unusual for the time of day (or, young, for the trailing level)
``multivariate``  the distance of the vector of metrics from the entity's joint behaviour
``window``        the largest |z| of the event against the entity's sliding windows
``hst``           Half-Space Trees over the squashed window z's and ratios (equal to River's)
================  ===========================================================================

``model.ensemble`` names the models an entity runs; :func:`build_models` builds them.
"""

from __future__ import annotations

from udfs.core.config import MODEL_NAMES, DetectorConfig
from udfs.core.models.base import Calibration, Model
from udfs.core.models.extremes import ExtremesModel
from udfs.core.models.multivariate import MultivariateModel
from udfs.core.models.seasonal import SeasonalModel
from udfs.core.models.trees import TreesModel
from udfs.core.models.window import WindowModel

__all__ = ["MODEL_NAMES", "build_models"]


def build_models(cfg: DetectorConfig) -> list[Model]:
    """The models of ``cfg.model.ensemble``, in that order, fresh."""
    longest = max(cfg.features.windows, key=lambda w: w.length_ms).name
    names = tuple(w.name for w in cfg.features.windows)
    mc = cfg.model
    # log1p(raw) on 100 bins of 0.1, a whole observation as prior, no tail: rarity is at most
    # log10 of the number of scores seen, so a young entity cannot be sure of anything.
    calibration = Calibration(100, 0.1, mc.calibration_half_life, 1.0, 0.0)
    ex = cfg.extremes
    out: list[Model] = []
    for name in mc.ensemble:
        if name == "window":
            out.append(WindowModel(mc, names, longest))
        elif name == "hst":
            out.append(TreesModel(cfg, longest))
        elif name == "extremes":
            out.append(ExtremesModel(ex, calibration))
        elif name == "seasonal":
            out.append(SeasonalModel(cfg.seasonal, calibration, ex.blocks, ex.block_events))
        elif name == "multivariate":
            out.append(MultivariateModel(cfg.multivariate, calibration))
        else:  # (ModelConfig validates the names)
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODEL_NAMES)})")
    return out
