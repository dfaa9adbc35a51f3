"""The structure of Half-Space Trees: the split feature and threshold of every node, built by
replaying River's tree construction with the same random number generator calls. It depends
only on the seed, the parameters, the limits and the sorted feature names, never on data, so
one :class:`HSTStructure` is shared by every entity (:func:`get_structure` caches it); the
per-entity masses are :class:`udfs.core.hst.CompactHST`. Pure core: no pyflink."""

from __future__ import annotations

import random
import struct
import types
import zlib
from collections.abc import Iterable, Mapping

__all__ = ["HSTStructure", "get_structure"]

# River's padding: a split point is drawn at least 15% of the range away from either limit.
_PADDING = 0.15

# Placeholder entry of the node table for leaves, which are never split.
_LEAF: tuple[int, float, int] = (0, 0.0, 0)


class HSTStructure:
    """The immutable, data-independent structure of a Half-Space Trees forest.

    The trees are built exactly as River's `HalfSpaceTrees` builds them on its first `learn_one`
    call: a `random.Random(seed)` generator, features taken in sorted order, a split feature drawn
    with `rng.choices` weighted by the width of each feature's current limits, a threshold drawn
    with `rng.uniform` with a padding of 15%, the left subtree built before the right one and all
    trees built one after the other from the same generator.

    Each tree is stored in heap layout: node `i` has children `2 * i + 1` (values strictly below
    the threshold) and `2 * i + 2`, so the depth of a node is implicit. Nodes `0` to
    `2 ** height - 2` of a tree are branches and the others are leaves. Tree `t` occupies indices
    `t * n_nodes_per_tree` to `(t + 1) * n_nodes_per_tree - 1` of the flat mass arrays of
    `CompactHST`.

    Prefer `get_structure`, which returns a cached instance, to calling this constructor.

    Parameters
    ----------
    feature_names
        Names of the features. They are stored sorted, as River sorts them; this is also the order
        expected by the vector methods of `CompactHST`.
    n_trees
        Number of trees.
    height
        Height of each tree. A tree of height `h` has `h + 1` levels and `2 ** (h + 1) - 1` nodes.
    seed
        Random number seed. Unlike River, a seed is required because the structure is shared.
    limits
        Range of each feature; features missing from it are assumed to lie in `[0, 1]`. Keys that
        are not in `feature_names` are ignored, as River ignores them.

    Attributes
    ----------
    split_feature
        For each branch, the index in `feature_names` of its split feature. Branches are listed
        tree after tree, each tree in heap order, `2 ** height - 1` per tree.
    threshold
        For each branch, in the same order, its split threshold.
    fingerprint
        CRC-32 of the feature names and the splits, used to check that an encoded `CompactHST`
        is restored with the structure it was encoded with.

    Examples
    --------

    >>> from udfs.core.hst_structure import HSTStructure

    >>> structure = HSTStructure(["y", "x"], n_trees=2, height=2, seed=42)
    >>> structure.feature_names
    ('x', 'y')
    >>> structure.n_nodes
    14
    >>> structure.split_feature
    (1, 0, 1, 1, 0, 0)
    >>> [round(t, 3) for t in structure.threshold]
    [0.168, 0.306, 0.687, 0.211, 0.171, 0.504]

    """

    __slots__ = (
        "feature_names",
        "n_trees",
        "height",
        "seed",
        "limits",
        "split_feature",
        "threshold",
        "fingerprint",
        "_nodes",
        "_roots",
        "_levels",
    )

    feature_names: tuple[str, ...]
    n_trees: int
    height: int
    seed: int
    limits: Mapping[str, tuple[float, float]]
    split_feature: tuple[int, ...]
    threshold: tuple[float, ...]
    fingerprint: int
    _nodes: tuple[tuple[int, float, int], ...]
    _roots: tuple[int, ...]
    _levels: range

    def __init__(
        self,
        feature_names: Iterable[str],
        n_trees: int,
        height: int,
        seed: int,
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        names = tuple(sorted(feature_names))
        if not names:
            raise ValueError("feature_names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError(f"feature_names contains duplicates: {names}")
        if n_trees < 1:
            raise ValueError(f"n_trees must be at least 1, got {n_trees}")
        if height < 0:
            raise ValueError(f"height must not be negative, got {height}")
        if seed is None:
            raise ValueError("a seed is required: the structure is shared between entities")
        given = {} if limits is None else limits
        # Converting to float gives the same splits as River computing with ints, as long as the
        # limits are below 2 ** 53 in absolute value.
        bounds = [
            (float(given[name][0]), float(given[name][1])) if name in given else (0.0, 1.0)
            for name in names
        ]

        rng = random.Random(seed)
        n_branches = 2**height - 1
        n_nodes = 2 * n_branches + 1
        split_feature: list[int] = []
        threshold: list[float] = []
        nodes: list[tuple[int, float, int]] = []
        for t in range(n_trees):
            tree_feature = [0] * n_branches
            tree_threshold = [0.0] * n_branches
            _grow(rng, list(bounds), height, 0, 0, tree_feature, tree_threshold)
            split_feature.extend(tree_feature)
            threshold.extend(tree_threshold)
            base = t * n_nodes
            nodes.extend(
                (tree_feature[i], tree_threshold[i], base + 2 * i + 1) for i in range(n_branches)
            )
            nodes.extend([_LEAF] * (n_branches + 1))

        fingerprint = zlib.crc32("\x00".join(names).encode())
        fingerprint = zlib.crc32(struct.pack("<II", n_trees, height), fingerprint)
        fingerprint = zlib.crc32(
            struct.pack(f"<{len(split_feature)}I", *split_feature), fingerprint
        )
        fingerprint = zlib.crc32(struct.pack(f"<{len(threshold)}d", *threshold), fingerprint)

        setattr_ = object.__setattr__
        setattr_(self, "feature_names", names)
        setattr_(self, "n_trees", n_trees)
        setattr_(self, "height", height)
        setattr_(self, "seed", seed)
        setattr_(self, "limits", types.MappingProxyType(dict(zip(names, bounds, strict=True))))
        setattr_(self, "split_feature", tuple(split_feature))
        setattr_(self, "threshold", tuple(threshold))
        setattr_(self, "fingerprint", fingerprint)
        setattr_(self, "_nodes", tuple(nodes))
        setattr_(self, "_roots", tuple(t * n_nodes for t in range(n_trees)))
        setattr_(self, "_levels", range(height))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"HSTStructure is immutable, cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"HSTStructure is immutable, cannot delete {name!r}")

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Unpickling goes through the cache, so that a pickled job shares one structure again.
        return (
            get_structure,
            (self.feature_names, self.n_trees, self.height, self.seed, dict(self.limits)),
        )

    def __repr__(self) -> str:
        return (
            f"HSTStructure(feature_names={self.feature_names!r}, n_trees={self.n_trees}, "
            f"height={self.height}, seed={self.seed}, limits={dict(self.limits)!r})"
        )

    @property
    def n_nodes_per_tree(self) -> int:
        """Number of nodes in each tree, `2 ** (height + 1) - 1`."""
        return (2 << self.height) - 1

    @property
    def n_nodes(self) -> int:
        """Number of nodes in the whole forest, which is the length of each mass array."""
        return self.n_trees * self.n_nodes_per_tree


def _grow(
    rng: random.Random,
    bounds: list[tuple[float, float]],
    height: int,
    i: int,
    depth: int,
    split_feature: list[int],
    threshold: list[float],
) -> None:
    """Replay River's `make_padded_tree` for heap node `i`, drawing the same random numbers."""
    if depth == height:
        return
    on = rng.choices(population=range(len(bounds)), weights=[hi - lo for lo, hi in bounds])[0]
    a, b = bounds[on]
    at = rng.uniform(a + _PADDING * (b - a), b - _PADDING * (b - a))
    split_feature[i] = on
    threshold[i] = at
    bounds[on] = (a, at)
    _grow(rng, bounds, height, 2 * i + 1, depth + 1, split_feature, threshold)
    bounds[on] = (at, b)
    _grow(rng, bounds, height, 2 * i + 2, depth + 1, split_feature, threshold)
    bounds[on] = (a, b)


_CACHE: dict[
    tuple[tuple[str, ...], int, int, int, tuple[tuple[float, float], ...]], HSTStructure
] = {}


def get_structure(
    feature_names: Iterable[str],
    n_trees: int,
    height: int,
    seed: int,
    limits: Mapping[str, tuple[float, float]] | None = None,
) -> HSTStructure:
    """Return the shared `HSTStructure` for these parameters, building it on first use.

    Structures are cached in a module-level dictionary for the life of the process. Two calls
    whose feature names are equal once sorted, and whose limits are equal once restricted to those
    features (missing ones counting as `(0.0, 1.0)`), return the same instance.

    Parameters
    ----------
    feature_names
        Names of the features, in any order.
    n_trees
        Number of trees.
    height
        Height of each tree.
    seed
        Random number seed.
    limits
        Range of each feature; features missing from it are assumed to lie in `[0, 1]`.

    Examples
    --------

    >>> from udfs.core.hst_structure import get_structure

    >>> a = get_structure(["b", "a"], n_trees=10, height=8, seed=42)
    >>> b = get_structure(("a", "b"), 10, 8, 42, limits={"a": (0, 1), "zzz": (5, 6)})
    >>> a is b
    True
    >>> a.n_nodes
    5110

    """
    names = tuple(sorted(feature_names))
    given = {} if limits is None else limits
    bounds = tuple(
        (float(given[name][0]), float(given[name][1])) if name in given else (0.0, 1.0)
        for name in names
    )
    key = (names, n_trees, height, seed, bounds)
    structure = _CACHE.get(key)
    if structure is None:
        structure = HSTStructure(
            names, n_trees, height, seed, dict(zip(names, bounds, strict=True))
        )
        structure = _CACHE.setdefault(key, structure)
    return structure
