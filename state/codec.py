"""The compact codec of an entity's state (pure, no pyflink).

The detector's snapshot is plain data: dicts with named fields, tuples, lists, numbers and
strings, and the packed windows and Half-Space-Trees masses as ``bytes``. It is stored as one
pickle (protocol 5, no classes, so nothing but builtins is ever unpickled) behind a one-byte
codec version, so a future change of layout can be recognised and migrated instead of
misread:

- ``2``: the pickle compressed with LZ4 (a block with its size in front, ``lz4.block``).
  What :func:`encode` writes whenever it is smaller, which is always in practice (at the
  defaults and 4 metrics, an entity's 2.3 KB of pickle after 3 events store as 1.3 KB, 3.4 KB
  after 300 as 2.5 KB, a mature entity's 7.9 KB as 6.9 KB; the zeros at the ends of its
  histograms and day profile are left out before pickling, ``trim_zeros`` in
  ``udfs/core/calibration.py``). Every cache miss reads and writes these bytes, the heap
  backend holds them, RocksDB compacts them and checkpoints copy them; compressing costs
  about 4 us and decompressing 2 us (zlib at its fastest level took 60-115 us to compress:
  lz4 is why the package is a dependency).
- ``1``: the pickle as it is (a state that does not compress, and state written before
  compression).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import lz4.block

__all__ = ["CODEC_VERSION", "MAX_DECODED_BYTES", "RAW_VERSION", "decode", "decode_value", "encode"]

CODEC_VERSION = 2
RAW_VERSION = 1
#: A compressed snapshot that says it holds more than this is refused (a corrupt or foreign
#: value): far above the largest state an entity can reach at the defaults
#: (udfs/core/bounds.py).
MAX_DECODED_BYTES = 1 << 30


def encode(snapshot: Any) -> bytes:
    """Serialise a detector snapshot: compressed (version 2) when that is smaller, else raw
    (version 1), so the encoded bytes are never more than one byte over the pickle's."""
    raw = pickle.dumps(snapshot, protocol=5)
    packed: bytes = lz4.block.compress(raw, store_size=True)
    if len(packed) < len(raw):
        return bytes((CODEC_VERSION,)) + packed
    return bytes((RAW_VERSION,)) + raw


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"state may hold builtins only, found {module}.{name}")


def decode_value(data: bytes) -> Any:
    """A pickle of plain data (builtins only: no class is ever looked up, so reading it runs
    no code), as the journal's entries are written (udfs/parse.py ``handoff``)."""
    return _BuiltinsOnly(io.BytesIO(data)).load()


def decode(data: bytes) -> Any:
    """Deserialise what :func:`encode` wrote (either version); raise ``ValueError`` on a
    foreign version or a corrupt value."""
    version = data[0] if data else None
    raw: bytes | memoryview
    if version == CODEC_VERSION:
        body = memoryview(data)[1:]
        if len(body) < 4 or int.from_bytes(body[:4], "little") > MAX_DECODED_BYTES:
            raise ValueError("entity state: compressed snapshot truncated or too large")
        try:
            raw = lz4.block.decompress(body)
        except lz4.block.LZ4BlockError as exc:
            raise ValueError(f"entity state: corrupt compressed snapshot ({exc})") from None
    elif version == RAW_VERSION:
        raw = memoryview(data)[1:]
    else:
        raise ValueError(
            f"entity state codec version {version!r} is not {CODEC_VERSION} or {RAW_VERSION}"
        )
    snap = _BuiltinsOnly(io.BytesIO(raw)).load()
    if not isinstance(snap, (tuple, dict)):
        raise ValueError(f"entity state must decode to named data, got {type(snap).__name__}")
    return snap
