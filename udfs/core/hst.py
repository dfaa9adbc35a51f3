"""Compact Half-Space Trees whose scores equal River's `HalfSpaceTrees` exactly.

River's `river.anomaly.HalfSpaceTrees` keeps one Python object per node (5,110 of them for the
default `n_trees=10, height=8`), which makes it expensive to (de)serialise once per event in
keyed state. Yet the tree *structure* (the split feature and threshold of every node) depends only
on the seed, the parameters, the limits and the sorted feature names; it never depends on data.
Only the node masses are learned.

This module therefore splits the model in two:

* `HSTStructure` (:mod:`udfs.core.hst_structure`) is the immutable structure, stored as flat
  arrays in heap layout, built by replaying River's tree construction with the same random
  number generator calls. One instance is shared by every entity; `get_structure` caches it
  per parameter set.
* `CompactHST` is the per-entity state: two compact mass arrays, a counter and a flag. Its
  `to_bytes` encoding is about 10 KB at the default parameters.

This module is part of the pure detection core and must never import pyflink.

"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from udfs.core.hst_structure import HSTStructure, get_structure

__all__ = ["FORMAT_VERSION", "CompactHST", "HSTStructure", "get_structure"]

#: Version byte written at the start of every `CompactHST.to_bytes` encoding.
FORMAT_VERSION = 1

# Header: version, flags, bytes per mass, reserved, window_size, counter, structure fingerprint.
_HEADER = struct.Struct("<BBBBIII")
_FLAG_FIRST_WINDOW = 1

# Array type code used for each width of mass; bytearray is used for one byte because indexing it
# is faster than indexing an array("B").
_TYPECODES = {2: "H", 4: "I" if array("I").itemsize == 4 else "L"}
_LITTLE_ENDIAN = sys.byteorder == "little"

_Masses: TypeAlias = "bytearray | array[int]"


class CompactHST:
    """Per-entity state of Half-Space Trees, scoring exactly as River's `HalfSpaceTrees`.

    The model holds a reference to a shared `HSTStructure`, two mass arrays with one entry per
    node of the forest (one byte per entry when `window_size <= 255`, two bytes up to 65,535 and
    four bytes above), a counter and a flag telling whether the first window is still being
    filled. Learning and scoring follow River: `learn_one` adds one to the left mass of each node
    on the path of `x` in every tree and, every `window_size` calls, the left masses become the
    right (reference) masses and are reset. `score_one` returns 0 during the first window, then
    1 minus the sum over the path nodes of `r_mass * 2 ** depth`, each path stopping after the
    first node whose `r_mass` is below `0.1 * window_size`, normalised by
    `n_trees * window_size * (2 ** (height + 1) - 1)`. High scores indicate anomalies.

    Unlike River, every feature of the structure must be present in every input: a missing
    feature raises a `ValueError` instead of following the most visited branch. Keys that are not
    features of the structure are ignored.

    Besides the dictionary API of River there are vector methods, which take the feature values
    as a sequence in the order of `structure.feature_names`, and `score_then_learn_vec`, which
    scores then learns an event with a single walk down each tree.

    Parameters
    ----------
    structure
        The shared structure, usually obtained from `get_structure`.
    window_size
        Number of observations used to compute the mass of each node.

    Examples
    --------

    This reproduces the example of River's `HalfSpaceTrees`, with the same scores.

    >>> from udfs.core.hst import CompactHST, get_structure

    >>> X = [0.5, 0.45, 0.43, 0.44, 0.445, 0.45, 0.0]
    >>> structure = get_structure(["x"], n_trees=5, height=3, seed=42)
    >>> hst = CompactHST(structure, window_size=3)

    >>> for x in X[:3]:
    ...     hst.learn_one({'x': x})  # Warming up

    >>> for x in X:
    ...     features = {'x': x}
    ...     hst.learn_one(features)
    ...     print(f'Anomaly score for x={x:.3f}: {hst.score_one(features):.3f}')
    Anomaly score for x=0.500: 0.107
    Anomaly score for x=0.450: 0.071
    Anomaly score for x=0.430: 0.107
    Anomaly score for x=0.440: 0.107
    Anomaly score for x=0.445: 0.107
    Anomaly score for x=0.450: 0.071
    Anomaly score for x=0.000: 0.853

    In a stream, score each event before learning it. The encoded state can be stored and
    restored between events.

    >>> import random
    >>> rng = random.Random(0)
    >>> hst = CompactHST(get_structure(["x", "y"], 10, 8, seed=42), window_size=250)
    >>> for _ in range(600):
    ...     v = [rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)]
    ...     score = hst.score_then_learn_vec(v)
    >>> print(f'{hst.score_vec([0.5, 0.5]):.3f} {hst.score_vec([0.1, 0.9]):.3f}')
    0.573 0.994

    >>> data = hst.to_bytes()
    >>> len(data)
    10236
    >>> restored = CompactHST.from_bytes(hst.structure, 250, data)
    >>> restored.score_vec([0.05, 0.95]) == hst.score_vec([0.05, 0.95])
    True

    """

    __slots__ = (
        "structure",
        "window_size",
        "_l_mass",
        "_r_mass",
        "_counter",
        "_first_window",
        "_size_limit",
        "_max_score",
    )

    structure: HSTStructure
    window_size: int
    _l_mass: _Masses
    _r_mass: _Masses
    _counter: int
    _first_window: bool
    _size_limit: float
    _max_score: int

    def __init__(self, structure: HSTStructure, window_size: int = 250) -> None:
        self._set_parameters(structure, window_size)
        self._l_mass = self._zeros()
        self._r_mass = self._zeros()
        self._counter = 0
        self._first_window = True

    def _set_parameters(self, structure: HSTStructure, window_size: int) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        if window_size >= 2**32:
            raise ValueError(f"window_size must be below 2 ** 32, got {window_size}")
        self.structure = structure
        self.window_size = window_size
        # The threshold under which the walk stops while scoring; .1 comes from the paper.
        self._size_limit = 0.1 * window_size
        self._max_score = structure.n_trees * window_size * structure.n_nodes_per_tree

    def __repr__(self) -> str:
        return (
            f"CompactHST(structure={self.structure!r}, window_size={self.window_size}, "
            f"counter={self._counter}, first_window={self._first_window})"
        )

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (CompactHST.from_bytes, (self.structure, self.window_size, self.to_bytes()))

    @property
    def itemsize(self) -> int:
        """Number of bytes per mass: 1, 2 or 4, the smallest that holds `window_size`."""
        if self.window_size <= 0xFF:
            return 1
        if self.window_size <= 0xFFFF:
            return 2
        return 4

    @property
    def counter(self) -> int:
        """Number of observations learned since the last pivot."""
        return self._counter

    @property
    def first_window(self) -> bool:
        """Whether the first window is still being filled, in which case scores are 0."""
        return self._first_window

    @property
    def l_mass(self) -> memoryview:
        """Read-only view of the masses of the current window, one per node (see `HSTStructure`)."""
        return memoryview(self._l_mass).toreadonly()

    @property
    def r_mass(self) -> memoryview:
        """Read-only view of the masses of the previous window, used for scoring."""
        return memoryview(self._r_mass).toreadonly()

    def _zeros(self) -> _Masses:
        n = self.structure.n_nodes
        itemsize = self.itemsize
        if itemsize == 1:
            return bytearray(n)
        return array(_TYPECODES[itemsize], bytes(n * itemsize))

    def _vector(self, x: Mapping[str, float]) -> list[float]:
        names = self.structure.feature_names
        try:
            return [x[name] for name in names]
        except KeyError:
            missing = [name for name in names if name not in x]
            if not missing:
                raise
            raise ValueError(
                f"x is missing feature(s) {', '.join(map(repr, missing))}; "
                f"CompactHST needs every feature of its structure: {list(names)}"
            ) from None

    def _pivot(self) -> None:
        self._r_mass = self._l_mass
        self._l_mass = self._zeros()
        self._first_window = False
        self._counter = 0

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Update the model with the features `x`, a mapping containing every feature."""
        self.learn_vec(self._vector(x))

    def score_one(self, x: Mapping[str, float]) -> float:
        """Return the anomaly score of `x`, a mapping containing every feature."""
        return self.score_vec(self._vector(x))

    def learn_vec(self, v: Sequence[float]) -> None:
        """Update the model with `v`, the feature values in `structure.feature_names` order."""
        structure = self.structure
        nodes = structure._nodes
        levels = structure._levels
        lm = self._l_mass
        for k in structure._roots:
            for _ in levels:
                lm[k] += 1
                f, t, k = nodes[k]
                if v[f] >= t:
                    k += 1
            lm[k] += 1
        self._counter += 1
        if self._counter == self.window_size:
            self._pivot()

    def score_vec(self, v: Sequence[float]) -> float:
        """Return the anomaly score of `v`, feature values in `structure.feature_names` order."""
        if self._first_window:
            return 0.0
        structure = self.structure
        nodes = structure._nodes
        levels = structure._levels
        rm = self._r_mass
        limit = self._size_limit
        total = 0
        for k in structure._roots:
            w = 1
            for _ in levels:
                r = rm[k]
                total += r * w
                if r < limit:
                    break
                w += w
                f, t, k = nodes[k]
                if v[f] >= t:
                    k += 1
            else:
                total += rm[k] * w
        # The total is an integer below 2 ** 53, so this equals River's float arithmetic.
        return 1 - total / self._max_score

    def score_then_learn_vec(self, v: Sequence[float], learn: bool = True) -> float:
        """Score `v`, then learn it if `learn` is true, walking down each tree once.

        This is equivalent to calling `score_vec(v)` and then, if `learn` is true, `learn_vec(v)`.

        Parameters
        ----------
        v
            The feature values, in `structure.feature_names` order.
        learn
            Whether to learn `v` after scoring it.

        Returns
        -------
        float
            The anomaly score of `v` before it is learned.

        """
        if not learn:
            return self.score_vec(v)
        structure = self.structure
        nodes = structure._nodes
        levels = structure._levels
        lm = self._l_mass
        if self._first_window:
            score = 0.0
            for k in structure._roots:
                for _ in levels:
                    lm[k] += 1
                    f, t, k = nodes[k]
                    if v[f] >= t:
                        k += 1
                lm[k] += 1
        else:
            rm = self._r_mass
            limit = self._size_limit
            total = 0
            for k in structure._roots:
                w = 1
                depths = iter(levels)
                # Score and learn down to the first node light enough to stop the scoring...
                for _ in depths:
                    lm[k] += 1
                    r = rm[k]
                    total += r * w
                    f, t, k = nodes[k]
                    if v[f] >= t:
                        k += 1
                    if r < limit:
                        break
                    w += w
                else:
                    lm[k] += 1
                    total += rm[k] * w
                    continue
                # ...then only learn down to the leaf, resuming at the next depth.
                for _ in depths:
                    lm[k] += 1
                    f, t, k = nodes[k]
                    if v[f] >= t:
                        k += 1
                lm[k] += 1
            score = 1 - total / self._max_score
        self._counter += 1
        if self._counter == self.window_size:
            self._pivot()
        return score

    def to_bytes(self) -> bytes:
        """Encode the state of this model, without its structure, as bytes.

        The encoding is a 16-byte little-endian header (the version byte `FORMAT_VERSION`, a flag
        byte, the number of bytes per mass, a reserved byte, then `window_size`, `counter` and the
        structure's fingerprint as unsigned 32-bit integers) followed by the left masses and the
        right masses, little-endian. At the default parameters it takes
        16 + 2 * 5,110 = 10,236 bytes.

        """
        header = _HEADER.pack(
            FORMAT_VERSION,
            _FLAG_FIRST_WINDOW if self._first_window else 0,
            self.itemsize,
            0,
            self.window_size,
            self._counter,
            self.structure.fingerprint,
        )
        lm, rm = self._l_mass, self._r_mass
        if _LITTLE_ENDIAN or isinstance(lm, bytearray) or isinstance(rm, bytearray):
            return b"".join((header, lm, rm))
        swapped_l, swapped_r = array(lm.typecode, lm), array(rm.typecode, rm)
        swapped_l.byteswap()
        swapped_r.byteswap()
        return b"".join((header, swapped_l, swapped_r))

    @classmethod
    def from_bytes(
        cls, structure: HSTStructure, window_size: int, data: bytes | bytearray | memoryview
    ) -> CompactHST:
        """Restore a model encoded by `to_bytes`.

        Parameters
        ----------
        structure
            The structure of the encoded model; its fingerprint is checked.
        window_size
            The window size of the encoded model; it is checked too.
        data
            The encoding.

        Raises
        ------
        ValueError
            If the encoding is malformed, has another version or does not match `structure` and
            `window_size`. The masses themselves are not checked.

        """
        view = memoryview(data).cast("B")
        if len(view) < _HEADER.size:
            raise ValueError(f"encoded CompactHST too short: {len(view)} bytes")
        version, flags, itemsize, _, encoded_window, counter, fingerprint = _HEADER.unpack_from(
            view
        )
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported CompactHST encoding version {version}, expected {FORMAT_VERSION}"
            )
        if flags & ~_FLAG_FIRST_WINDOW:
            raise ValueError(f"unknown flags in CompactHST encoding: {flags:#04x}")
        if fingerprint != structure.fingerprint:
            raise ValueError("the CompactHST was encoded with another structure")
        if encoded_window != window_size:
            raise ValueError(
                f"the CompactHST was encoded with window_size={encoded_window}, not {window_size}"
            )
        # Skip __init__, which would allocate mass arrays only to replace them.
        model = cls.__new__(cls)
        model._set_parameters(structure, window_size)
        if itemsize != model.itemsize:
            raise ValueError(
                f"{itemsize} bytes per mass in the encoding, {model.itemsize} expected"
            )
        if counter >= window_size:
            raise ValueError(f"counter {counter} is not below window_size {window_size}")
        size = structure.n_nodes * itemsize
        expected = _HEADER.size + 2 * size
        if len(view) != expected:
            raise ValueError(f"encoded CompactHST has {len(view)} bytes, expected {expected}")
        start = _HEADER.size
        if itemsize == 1:
            model._l_mass = bytearray(view[start : start + size])
            model._r_mass = bytearray(view[start + size :])
        else:
            lm = array(_TYPECODES[itemsize])
            lm.frombytes(view[start : start + size])
            rm = array(_TYPECODES[itemsize])
            rm.frombytes(view[start + size :])
            if not _LITTLE_ENDIAN:
                lm.byteswap()
                rm.byteswap()
            model._l_mass, model._r_mass = lm, rm
        model._counter = counter
        model._first_window = bool(flags & _FLAG_FIRST_WINDOW)
        return model
