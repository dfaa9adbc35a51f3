"""The compiled copies of core modules (scripts/build_native.py) are the pure modules' code:
the same features, readiness and state, and the same detector records and snapshots, to the
bit; and a copy is used only when built from the module's exact bytes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_features import GRID_CFG, _stream, pure_features
from udfs.core import features
from udfs.core.feature_config import FeatureConfig
from udfs.core.native import CORE, HOT, compiled, digest

SOURCE = Path(features.__file__)
ROOT = SOURCE.parents[2]
# The core over a stream with every kind of record (scores, alerts, late, drift, verdicts,
# stale entities): its records (NaN as text, floats exact) and each detector's encoded state.
_RUN_CORE = r"""
import json, sys
import udfs.core.native as native
if sys.argv[1] == "pure":
    native.compiled = lambda path, name: None  # before any core module binds its copy
from tools.bench import generate_events
from job.demo_data import write_demo
from state.codec import encode
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import DeadLetter, ParseConfig
from udfs.core.feedback import Verdict, parse_event_or_verdict

def plain(v):
    if isinstance(v, float):
        return "nan" if v != v else v.hex()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v

write_demo(sys.argv[2])
lines = open(sys.argv[2]).read().splitlines() + generate_events(3000, metrics=4, entities=3)
lines.insert(4000, json.dumps({"alert_id": "x", "entity": "srv-1", "verdict": "false_positive",
                               "reason": "", "ts": 1767225600000}))
cfg, pcfg = DetectorConfig(), ParseConfig()
dets, out = {}, []
for line in lines:
    rec = parse_event_or_verdict(line, pcfg)
    if isinstance(rec, DeadLetter):
        continue
    det = dets.get(rec.entity)
    if det is None:
        det = dets[rec.entity] = EntityDetector(rec.entity, cfg)
    got = det.on_verdict(rec) if isinstance(rec, Verdict) else det.on_event(rec)
    out += [plain(o) for o in got]
state = {e: encode(d.snapshot()).hex() for e, d in dets.items()}
for d in dets.values():
    out += [plain(o) for o in d.flush()]
print(json.dumps({"modules": sorted({type(d).__module__ for d in dets.values()}),
                  "records": out, "state": state}))
"""


def _bits(out: tuple[dict[str, float], dict[str, bool]]) -> Any:
    feats, ready = out
    return [(k, v.hex() if not math.isnan(v) else "nan") for k, v in feats.items()], ready


def test_the_compiled_copy_is_built_and_used() -> None:
    copy = compiled(str(SOURCE), "features")
    assert copy is not None, "no compiled copy of udfs/core/features.py: run `make native` (needs a C compiler)"
    assert features.EntityFeatures is copy.EntityFeatures
    assert Path(copy.__file__ or "").suffix == ".so"


@pytest.mark.parametrize("name", sorted(HOT))
def test_every_compiled_module_is_built_and_its_classes_used(name: str) -> None:
    import importlib

    module = importlib.import_module(f"udfs.core.{name}")
    copy = compiled(str(Path(module.__file__ or "")), name)
    assert copy is not None, f"no compiled copy of udfs/core/{name}.py: run `make native`"
    for cls in HOT[name]:
        assert getattr(module, cls) is getattr(copy, cls)


@pytest.mark.parametrize("name", sorted(HOT))
def test_a_compiled_class_keeps_its_docstring_and_its_examples(name: str) -> None:
    import doctest
    import importlib

    from udfs.core.native import pure

    module = importlib.import_module(f"udfs.core.{name}")
    found = {test.name for test in doctest.DocTestFinder().find(module) if test.examples}
    source_text = Path(module.__file__ or "").read_text()
    for cls in HOT[name]:
        original = pure(name, cls)
        assert original is not getattr(module, cls)
        assert original.__doc__ and getattr(module, cls).__doc__ == original.__doc__
        for attr, value in vars(original).items():
            doc = getattr(value, "__doc__", None) if callable(value) or attr == "__doc__" else None
            if isinstance(doc, str) and ">>>" in doc:
                owner = f"udfs.core.{name}.__test__.{cls}"
                assert any(t.startswith(owner) for t in found), (cls, attr)
    assert (">>>" in source_text) <= bool(found)


def test_the_compiled_core_gives_the_records_and_state_of_the_pure_core(tmp_path: Path) -> None:
    runs = {}
    for mode in ("pure", "compiled"):
        done = subprocess.run(
            [sys.executable, "-c", _RUN_CORE, mode, str(tmp_path / "demo.jsonl")],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        runs[mode] = json.loads(done.stdout)
    assert runs["pure"]["modules"] == ["udfs.core.detector"]
    assert runs["compiled"]["modules"][0].startswith("udfs.core._native.detector_")
    pure, fast = runs["pure"], runs["compiled"]
    kinds = {r[0] for r in pure["records"]}
    assert {"score", "alert", "late", "drift"} <= kinds
    assert len(fast["records"]) == len(pure["records"])
    for i, (a, b) in enumerate(zip(pure["records"], fast["records"], strict=True)):
        assert a == b, i
    assert fast["state"] == pure["state"]


def test_a_copy_built_from_other_bytes_is_not_used(tmp_path: Path) -> None:
    edited = tmp_path / "features.py"
    edited.write_bytes(SOURCE.read_bytes() + b"\n# edited\n")
    assert compiled(str(edited), "features") is None
    assert compiled(str(SOURCE), "features") is not None


def test_a_copy_is_stale_when_another_core_module_changes(tmp_path: Path) -> None:
    # A compiled copy checks what it gets from the other core modules against their types
    # when it was built (the scorer against the histogram's snapshot): an edit of any core
    # module must make every copy stale, not only the edited module's.
    import shutil

    core = tmp_path / "core"
    shutil.copytree(CORE, core, ignore=shutil.ignore_patterns("_native", "__pycache__"))
    before = digest(core / "scoring.py", core)
    assert before == digest(CORE / "scoring.py")  # the compiled copies do not count
    other = tmp_path / "edited"
    shutil.copytree(core, other)
    (other / "calibration.py").write_bytes((core / "calibration.py").read_bytes() + b"\n# edited\n")
    assert (other / "scoring.py").read_bytes() == (core / "scoring.py").read_bytes()
    assert digest(other / "scoring.py", other) != before


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
