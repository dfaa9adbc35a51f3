"""The compiled copy of the window features (scripts/build_native.py) is the pure module's
code: the same features, readiness and state, to the bit; and it is used only when built
from the module's exact bytes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.test_features import GRID_CFG, _stream, pure_features
from udfs.core import features
from udfs.core.feature_config import FeatureConfig
from udfs.core.native import compiled

SOURCE = Path(features.__file__)


def _bits(out: tuple[dict[str, float], dict[str, bool]]) -> Any:
    feats, ready = out
    return [(k, v.hex() if not math.isnan(v) else "nan") for k, v in feats.items()], ready


def test_the_compiled_copy_is_built_and_used() -> None:
    copy = compiled(str(SOURCE), "features")
    assert copy is not None, "no compiled copy of udfs/core/features.py: run `make native` (needs a C compiler)"
    assert features.EntityFeatures is copy.EntityFeatures
    assert Path(copy.__file__ or "").suffix == ".so"


def test_a_copy_built_from_other_bytes_is_not_used(tmp_path: Path) -> None:
    edited = tmp_path / "features.py"
    edited.write_bytes(SOURCE.read_bytes() + b"\n# edited\n")
    assert compiled(str(edited), "features") is None
    assert compiled(str(SOURCE), "features") is not None


@pytest.mark.parametrize(
    "cfg",
    [GRID_CFG, FeatureConfig(), replace(GRID_CFG, robust_windows=("4s", "20s"))],
    ids=["grid", "default", "robust"],
)
def test_compiled_and_pure_give_the_same_bits(cfg: FeatureConfig) -> None:
    pure = pure_features().EntityFeatures
    fast = features.EntityFeatures
    assert pure is not fast
    events = _stream(7, 3000, scale_ms=1_500, grid_ms=1, gap_ms=(700_000, 3_600_000))
    a, b = pure(cfg), fast(cfg)
    for i, (t, m) in enumerate(events):
        full = i % 3 != 0
        assert _bits(a.update(t, m, full)) == _bits(b.update(t, m, full)), i
        if i % 500 == 250:
            assert a.pack() == b.pack() and a.snapshot() == b.snapshot(), i
            # Both restore what one of them wrote, packed or as a plain snapshot. (A window
            # packed densely carries its empty slots' old bytes, which a restore from a plain
            # snapshot leaves zero: the same state, other bytes; so both restore one value.)
            data = a.pack() if i % 1000 == 250 else b.snapshot()
            a, b = pure.restore(cfg, data), fast.restore(cfg, data)
    assert a.pack() == b.pack()
