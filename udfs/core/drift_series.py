"""One series watched by the drift monitor (``docs/drift.md``): its reference sample, bin
edges and counts, the ring of sub-window counts and the current sample; and its state as
plain data (:func:`pack_series`, :func:`unpack_series`)."""

from __future__ import annotations

from array import array
from typing import Any

from udfs.core.drift_stats import next_sample, sample_offset
from udfs.core.packing import from_le_bytes, le_bytes

__all__ = ["Series", "blank_series", "pack_series", "unpack_series"]


class Series:
    """State of one series; ``n`` counts its finite values since the reference was reset."""

    __slots__ = (
        "name",
        "n",
        "ref_from_ts",
        "ref_to_ts",
        "building",
        "sample",
        "edges",
        "ref_counts",
        "ring",
        "ring_ts",
        "sums",
        "cur_sample",
        "flags",
        "next_sample",
        "base",
    )

    name: str
    n: int
    ref_from_ts: int
    ref_to_ts: int
    building: array[float]  # the reference sample while it grows
    sample: bytes  # the frozen, sorted reference sample (little-endian float32)
    edges: tuple[float, ...]
    ref_counts: list[int]
    ring: array[int]  # sub-window bin counts, flat: slot * psi_bins + bin
    ring_ts: list[int]  # first timestamp of each sub-window
    sums: list[int]  # bin counts of the whole ring
    cur_sample: array[float]  # current KS sample, slot = block % ks_samples
    flags: int  # PSI | KS | STALE bits (udfs.core.drift): in drift (or stale), not re-emitted until cleared
    next_sample: int  # derived from n: index of the next sampled value
    base: int  # derived from n: offset of the open sub-window in ring


def blank_series(name: str, ref_stride: int) -> Series:
    """A series that has seen no value yet."""
    s = Series()
    s.name = name
    s.n = 0
    s.ref_from_ts = 0
    s.ref_to_ts = 0
    s.building = array("f")
    s.sample = b""
    s.edges = ()
    s.ref_counts = []
    s.ring = array("B")
    s.ring_ts = []
    s.sums = []
    s.cur_sample = array("f")
    s.flags = 0
    s.next_sample = sample_offset(0, ref_stride)
    s.base = 0
    return s


def pack_series(s: Series) -> tuple[Any, ...]:
    """The series as plain data (tuples, ints, str, bytes), for :func:`unpack_series`."""
    return (
        s.name,
        s.n,
        s.ref_from_ts,
        s.ref_to_ts,
        s.sample if s.sample else le_bytes(s.building),
        s.edges,
        tuple(s.ref_counts),
        le_bytes(s.ring),
        tuple(s.ring_ts),
        tuple(s.sums),
        le_bytes(s.cur_sample),
        s.flags,
    )


def unpack_series(
    data: tuple[Any, ...],
    *,
    typecode: str,
    bounds: tuple[int, int, int],
    strides: tuple[int, int],
    sub_windows: tuple[int, int, int],
) -> Series:
    """The series :func:`pack_series` wrote, under the monitor's layout: ``bounds`` are the
    counts at which the reference sample starts, is complete, and the reference ends;
    ``strides`` the reference and current sampling strides; ``sub_windows`` the values per
    sub-window, the number of sub-windows and the bins per sub-window."""
    b1, b2, b3 = bounds
    ref_stride, cur_stride = strides
    check_every, nsub, bins = sub_windows
    s = Series()
    (
        s.name,
        n,
        s.ref_from_ts,
        s.ref_to_ts,
        sample,
        edges,
        ref_counts,
        ring,
        ring_ts,
        sums,
        cur_sample,
        s.flags,
    ) = data
    s.n = n
    s.edges = tuple(edges)
    s.ref_counts = list(ref_counts)
    s.ring = from_le_bytes(typecode, ring)
    s.ring_ts = list(ring_ts)
    s.sums = list(sums)
    s.cur_sample = from_le_bytes("f", cur_sample)
    s.base = 0
    if n < b2:
        s.building = from_le_bytes("f", sample)
        s.sample = b""
        s.next_sample = next_sample(max(n - b1, 0), ref_stride)
    else:
        s.building = array("f")
        s.sample = bytes(sample)
        j = n - b3
        s.next_sample = next_sample(max(j, 0), cur_stride)
        if j > 0:
            s.base = (((j - 1) // check_every) % nsub) * bins
    return s
