"""The compact codec of an entity's state (pure, no pyflink).

The detector's snapshot is plain data: dicts with named fields, tuples, lists, numbers and
strings, and the packed windows and Half-Space-Trees masses as ``bytes``. It is stored as one pickle (protocol 5, no classes, so
nothing but builtins is ever unpickled) behind a one-byte codec version, so a future change
of layout can be recognised and migrated instead of misread.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["CODEC_VERSION", "decode", "decode_value", "encode"]

CODEC_VERSION = 1


def encode(snapshot: Any) -> bytes:
    """Serialise a detector snapshot."""
    return bytes((CODEC_VERSION,)) + pickle.dumps(snapshot, protocol=5)


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"state may hold builtins only, found {module}.{name}")


def decode_value(data: bytes) -> Any:
    """A pickle of plain data (builtins only: no class is ever looked up, so reading it runs
    no code), as the journal's entries are written (udfs/parse.py ``handoff``)."""
    import io

    return _BuiltinsOnly(io.BytesIO(data)).load()


def decode(data: bytes) -> Any:
    """Deserialise what :func:`encode` wrote; raise ``ValueError`` on a foreign version."""
    if not data or data[0] != CODEC_VERSION:
        got = data[0] if data else None
        raise ValueError(f"entity state codec version {got!r} is not {CODEC_VERSION}")
    import io

    snap = _BuiltinsOnly(io.BytesIO(memoryview(data)[1:])).load()
    if not isinstance(snap, (tuple, dict)):
        raise ValueError(f"entity state must decode to named data, got {type(snap).__name__}")
    return snap
