"""Use a compiled copy of a core module when one was built from its exact source.

``scripts/build_native.py`` compiles a copy of ``udfs/core/<name>.py`` with mypyc into
``udfs/core/_native/<name>_<digest>``, ``<digest>`` being the first 16 hex digits of the
SHA-256 of the source and of every other core source (:func:`digest`): a compiled copy checks
the types of what it gets from the other core modules as they were when it was compiled, so
it is current only for the sources it was compiled with. The module, at its end, asks
:func:`compiled` for the copy of its own bytes and, when there is one, binds its hot classes
to the compiled ones. An edited core has another digest, so a stale build is never used: the
module runs as written until the copy is built again. Without a C compiler, or on another
platform, there is no copy and the pure module runs. The two give the same results to the
bit (``tests/core/test_native.py``).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["HOT", "bind", "compiled", "digest", "pure"]

# The modules scripts/build_native.py compiles, and the classes each takes from its copy.
# Only these are bound: configuration classes stay pure (they travel pickled with the
# operator, and a frozen dataclass compiled by mypyc does not unpickle there).
# Names are module paths under ``udfs.core`` (``models.residual`` is
# ``udfs/core/models/residual.py``).
HOT: dict[str, tuple[str, ...]] = {
    "features": ("EntityFeatures",),
    "alerts": ("EpisodeTracker",),
    "calibration": ("DecayedHistogram", "AdaptiveThreshold"),
    "staleness": ("InterArrival",),
    "ordering": ("EventOrder",),
    "health": ("Health",),
    "decision": ("Decider",),
    "scoring": ("Scorer",),
    "models.extremes": ("ExtremesModel", "RangeTracker"),
    "models.residual": ("ResidualModel",),
    "detector": ("EntityDetector",),
}


def source(name: str) -> Path:
    """The source file of core module ``name`` (a key of :data:`HOT`)."""
    return Path(__file__).resolve().parent.joinpath(*name.split(".")).with_suffix(".py")


def stem(name: str, path: str | Path) -> str:
    """The compiled copy's module name in ``udfs/core/_native`` for the bytes at ``path``."""
    return f"{name.replace('.', '_')}_{digest(path)}"


#: The core's sources (this folder, without the compiled copies).
CORE = Path(__file__).resolve().parent
_CORE_DIGESTS: dict[Path, bytes] = {}


def core_digest(root: Path = CORE) -> bytes:
    """The SHA-256 of every core source under ``root`` (names and bytes; ``_native`` left
    out), computed once per process."""
    found = _CORE_DIGESTS.get(root)
    if found is None:
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if rel.parts[0] == "_native":
                continue
            h.update(rel.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        found = _CORE_DIGESTS[root] = h.digest()
    return found


def digest(path: str | Path, root: Path = CORE) -> str:
    """The first 16 hex digits of the SHA-256 of the file at ``path`` and of the core's
    sources under ``root`` (:func:`core_digest`)."""
    return hashlib.sha256(Path(path).read_bytes() + core_digest(root)).hexdigest()[:16]


def compiled(path: str, name: str) -> ModuleType | None:
    """The compiled copy of the module ``name`` whose source is at ``path``, or ``None``
    when none was built from these bytes (or it cannot load here)."""
    try:
        return importlib.import_module(f"udfs.core._native.{stem(name, path)}")
    except (ImportError, OSError):
        return None


# The pure classes a compiled copy replaced, by (module name, class name).
_PURE: dict[tuple[str, str], Any] = {}


def bind(namespace: dict[str, Any], path: str, name: str) -> None:
    """Put the hot classes of the compiled copy of module ``name`` (source at ``path``) in
    ``namespace`` (the module's globals) when a copy of these very bytes was built.

    This is the pattern of the standard library's optional accelerators (``heapq`` ends by
    importing ``_heapq``'s functions over its own): the module is written and read as pure
    Python, and its last lines swap in the faster equal. The compiled class keeps the pure
    one's docstring, and the pure class stays in the module's ``__test__`` so its doctest
    examples run (against the compiled class, which is what the job uses)."""
    copy = compiled(path, name)
    if copy is not None:
        tests = namespace.setdefault("__test__", {})
        for cls in HOT[name]:
            original = namespace[cls]
            fast = getattr(copy, cls)
            _PURE[(name, cls)] = original
            # mypyc keeps only a signature as the class's docstring: give help() the real
            # one, and keep the pure class's examples collected by doctest (``__test__``).
            fast.__doc__ = original.__doc__
            tests[cls] = original
            namespace[cls] = fast


def pure(name: str, cls: str) -> Any:
    """The pure class ``cls`` of core module ``name`` (``HOT``), whether or not a compiled
    copy replaced it (tests that patch a method)."""
    import sys

    found = _PURE.get((name, cls))
    return found if found is not None else getattr(sys.modules[f"udfs.core.{name}"], cls)
