"""Typed arrays to and from little-endian bytes (pure): the packed state reads the same on
every host (drift samples and rings, feature window rings).

>>> from array import array
>>> from_le_bytes("d", le_bytes(array("d", [1.5, -2.0]))).tolist()
[1.5, -2.0]
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

__all__ = ["from_le_bytes", "le_bytes"]

_LITTLE_ENDIAN = sys.byteorder == "little"


def le_bytes(arr: array[Any]) -> bytes:
    """The array's items as little-endian bytes, whatever the host."""
    if _LITTLE_ENDIAN:
        return arr.tobytes()
    swapped = array(arr.typecode, arr)
    swapped.byteswap()
    return swapped.tobytes()


def from_le_bytes(typecode: str, data: bytes | memoryview) -> array[Any]:
    """An array of ``typecode`` from what :func:`le_bytes` wrote (whole items only)."""
    arr = array(typecode)
    arr.frombytes(data)
    if not _LITTLE_ENDIAN:
        arr.byteswap()
    return arr
