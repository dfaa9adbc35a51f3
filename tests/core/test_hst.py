"""Tests of `udfs.core.hst`: compact Half-Space Trees equal to River's, score for score."""

from __future__ import annotations

import doctest
import pickle
import random
from typing import Any

import pytest
from river import anomaly

from udfs.core import hst as hst_module
from udfs.core.hst import FORMAT_VERSION, CompactHST, HSTStructure, get_structure


def river_nodes(model: anomaly.HalfSpaceTrees) -> list[Any]:
    """River's nodes in the heap layout of `HSTStructure`: tree after tree, node i -> 2i+1, 2i+2."""
    flat: list[Any] = []
    for root in model.trees:
        level = [root]
        while level:
            flat.extend(level)
            level = [child for node in level for child in getattr(node, "children", ())]
    return flat


def random_config(rng: random.Random) -> dict[str, Any]:
    n_features = rng.randint(1, 6)
    names = [f"f{i}" for i in rng.sample(range(20), n_features)]
    limits: dict[str, tuple[float, float]] = {}
    for name in names:
        kind = rng.random()
        if kind < 0.3:
            lo = rng.uniform(-100, 100)
            limits[name] = (lo, lo + rng.uniform(0.01, 300))
        elif kind < 0.45:
            limits[name] = (rng.randint(-5, 0), rng.randint(1, 10))  # ints, as users write them
    limits["not_a_feature"] = (3.0, 4.0)  # ignored by River and by get_structure
    return {
        "names": names,
        "n_trees": rng.randint(1, 10),
        "height": rng.randint(0, 8),
        # 10, 20 and 30 make the stopping limit 0.1 * window_size an integer (or, for 30, a hair
        # above one), where `<` and `<=` differ.
        "window_size": rng.choice([3, 4, 5, 6, 8, 10, 10, 13, 17, 20, 20, 30]),
        "seed": rng.randint(0, 2**31),
        "limits": limits,
    }


def random_event(rng: random.Random, names: list[str], structure: HSTStructure) -> dict[str, float]:
    x = {}
    for j, name in enumerate(names_sorted := sorted(names)):
        lo, hi = structure.limits[name]
        kind = rng.random()
        if kind < 0.15:
            # A tie: exactly one of the thresholds of this feature, when it has some.
            ties = [
                t
                for f, t in zip(structure.split_feature, structure.threshold, strict=True)
                if f == j
            ]
            x[name] = rng.choice(ties) if ties else lo
        elif kind < 0.25:
            x[name] = rng.choice([lo, hi])
        elif kind < 0.4:
            x[name] = rng.uniform(lo - 2 * (hi - lo), hi + 2 * (hi - lo))  # out of range
        else:
            # Clustered values, so that masses concentrate and scoring walks deep.
            centre = lo + (hi - lo) * (0.3 + 0.1 * (j % 3))
            x[name] = rng.gauss(centre, (hi - lo) * 0.05)
    assert list(x) == names_sorted
    return x


# Random configurations, plus River's default tree shape with a small window.
STREAMS: list[tuple[int, dict[str, Any]]] = [(seed, {}) for seed in range(14)] + [
    (100, {"n_trees": 10, "height": 8, "window_size": 20}),
    (101, {"n_trees": 10, "height": 8, "window_size": 30, "limits": {}}),
]


@pytest.mark.parametrize(("stream_seed", "overrides"), STREAMS)
def test_scores_and_masses_equal_rivers_on_random_streams(
    stream_seed: int, overrides: dict[str, Any]
) -> None:
    rng = random.Random(stream_seed)
    cfg = random_config(rng) | overrides
    names = cfg["names"]
    river = anomaly.HalfSpaceTrees(
        n_trees=cfg["n_trees"],
        height=cfg["height"],
        window_size=cfg["window_size"],
        limits=cfg["limits"],
        seed=cfg["seed"],
    )
    structure = get_structure(names, cfg["n_trees"], cfg["height"], cfg["seed"], cfg["limits"])
    by_dict = CompactHST(structure, cfg["window_size"])
    by_vec = CompactHST(structure, cfg["window_size"])
    fused = CompactHST(structure, cfg["window_size"])

    n_learned = 0
    for step in range(400):
        x = random_event(rng, names, structure)
        v = [x[name] for name in structure.feature_names]
        op = rng.choice(["score", "learn", "score_then_learn", "score_then_learn"])
        if op in ("score", "score_then_learn"):
            expected = river.score_one(x)
            assert by_dict.score_one(x) == expected, (step, cfg)
            assert by_vec.score_vec(v) == expected, (step, cfg)
        if op == "score":
            assert fused.score_then_learn_vec(v, learn=False) == expected, (step, cfg)
        elif op == "learn":
            river.learn_one(x)
            by_dict.learn_one(x)
            by_vec.learn_vec(v)
            fused.learn_vec(v)
        else:
            assert fused.score_then_learn_vec(v) == expected, (step, cfg)
            river.learn_one(x)
            by_dict.learn_one(x)
            by_vec.learn_vec(v)
        n_learned += op != "score"

        if n_learned and step % 5 == 0:
            nodes = river_nodes(river)
            l_mass = [node.l_mass for node in nodes]
            r_mass = [node.r_mass for node in nodes]
            for model in (by_dict, by_vec, fused):
                assert list(model.l_mass) == l_mass, (step, cfg)
                assert list(model.r_mass) == r_mass, (step, cfg)
                assert model.counter == river.counter
                assert model.first_window == river._first_window
    # Enough learning happened for the streams to go through many pivots.
    assert n_learned > 5 * cfg["window_size"]
    assert not by_dict.first_window


@pytest.mark.parametrize("stream_seed", range(6))
def test_structure_has_rivers_splits_and_thresholds(stream_seed: int) -> None:
    cfg = random_config(random.Random(1000 + stream_seed))
    river = anomaly.HalfSpaceTrees(
        n_trees=cfg["n_trees"], height=cfg["height"], limits=cfg["limits"], seed=cfg["seed"]
    )
    river.learn_one({name: 0.5 for name in reversed(cfg["names"])})
    structure = HSTStructure(
        cfg["names"], cfg["n_trees"], cfg["height"], cfg["seed"], cfg["limits"]
    )

    branches = [node for node in river_nodes(river) if hasattr(node, "threshold")]
    assert [structure.feature_names[f] for f in structure.split_feature] == [
        node.feature for node in branches
    ]
    assert list(structure.threshold) == [node.threshold for node in branches]
    assert structure.n_nodes == len(river_nodes(river))


def test_window_sizes_above_255_use_two_byte_masses_and_still_equal_river() -> None:
    rng = random.Random(7)
    river = anomaly.HalfSpaceTrees(n_trees=3, height=4, window_size=300, seed=5)
    model = CompactHST(get_structure(["a", "b"], 3, 4, seed=5), window_size=300)
    assert model.itemsize == 2
    for _ in range(1000):
        x = {"a": rng.gauss(0.5, 0.1), "b": rng.random()}
        assert model.score_then_learn_vec([x["a"], x["b"]]) == river.score_one(x)
        river.learn_one(x)
    assert list(model.r_mass) == [node.r_mass for node in river_nodes(river)]
    assert max(model.r_mass) == 300
    restored = CompactHST.from_bytes(model.structure, 300, model.to_bytes())
    assert restored.to_bytes() == model.to_bytes()


@pytest.mark.parametrize("window_size", [7, 250, 300, 70_000])
@pytest.mark.parametrize("stop_after", [3, 1234])
def test_snapshot_round_trip_mid_stream_continues_with_identical_scores(
    window_size: int, stop_after: int
) -> None:
    rng = random.Random(window_size * stop_after)
    structure = get_structure(["cpu", "mem", "io"], 4, 6, seed=11)
    events = [[rng.gauss(0.5, 0.1) for _ in range(3)] for _ in range(stop_after + 600)]
    uninterrupted = CompactHST(structure, window_size)
    interrupted = CompactHST(structure, window_size)
    for v in events[:stop_after]:
        uninterrupted.score_then_learn_vec(v)
        interrupted.score_then_learn_vec(v)

    data = interrupted.to_bytes()
    assert data[0] == FORMAT_VERSION
    restored = CompactHST.from_bytes(structure, window_size, data)
    assert restored.to_bytes() == data
    assert restored.counter == interrupted.counter
    assert restored.first_window == interrupted.first_window

    for v in events[stop_after:]:
        assert restored.score_then_learn_vec(v) == uninterrupted.score_then_learn_vec(v)
    assert restored.to_bytes() == uninterrupted.to_bytes()


def test_pickling_goes_through_the_compact_encoding_and_the_structure_cache() -> None:
    structure = get_structure(["x", "y"], 2, 3, seed=1)
    model = CompactHST(structure, 5)
    for i in range(12):
        model.learn_vec([i / 12, 1 - i / 12])

    copy = pickle.loads(pickle.dumps(model))

    assert copy.structure is structure
    assert copy.to_bytes() == model.to_bytes()
    assert copy.score_vec([0.5, 0.5]) == model.score_vec([0.5, 0.5])


def test_encoding_at_default_parameters_is_at_most_11_kb() -> None:
    names = [f"feature_{i}" for i in range(12)]
    model = CompactHST(get_structure(names, n_trees=10, height=8, seed=42), window_size=250)
    for i in range(600):
        model.score_then_learn_vec([(i * j % 17) / 17 for j in range(12)])

    data = model.to_bytes()

    assert model.itemsize == 1
    assert len(data) == 16 + 2 * 5110
    assert len(data) <= 11 * 1024


def test_dict_api_rejects_a_missing_feature_by_name() -> None:
    model = CompactHST(get_structure(["cpu", "mem", "io"], 2, 3, seed=0), window_size=5)

    with pytest.raises(ValueError, match="'mem'") as learn_error:
        model.learn_one({"cpu": 0.1, "io": 0.2})
    with pytest.raises(ValueError, match="'mem'"):
        model.score_one({"cpu": 0.1, "io": 0.2, "disk": 0.3})

    assert "missing" in str(learn_error.value)
    assert model.counter == 0  # nothing was learned


def test_dict_api_ignores_keys_that_are_not_features() -> None:
    structure = get_structure(["a"], 3, 3, seed=0)
    with_extra = CompactHST(structure, window_size=3)
    without = CompactHST(structure, window_size=3)
    for value in (0.1, 0.2, 0.3, 0.4):
        with_extra.learn_one({"a": value, "b": 99.0})
        without.learn_one({"a": value})
    assert with_extra.to_bytes() == without.to_bytes()


def test_get_structure_shares_one_instance_per_parameter_set() -> None:
    a = get_structure(["b", "a"], 3, 2, seed=9, limits={"a": (0, 1), "zz": (3, 4)})
    b = get_structure(("a", "b"), 3, 2, 9)
    c = get_structure(("a", "b"), 3, 2, 10)
    d = get_structure(("a", "b"), 3, 2, 9, limits={"a": (0.0, 2.0)})

    assert a is b
    assert c is not a and d is not a
    assert a.feature_names == ("a", "b")
    assert a.fingerprint != c.fingerprint != d.fingerprint


def test_structure_is_immutable() -> None:
    structure = get_structure(["a"], 1, 1, seed=0)
    with pytest.raises(AttributeError):
        structure.height = 3
    with pytest.raises(TypeError):
        structure.limits["a"] = (0.0, 2.0)  # type: ignore[index]


def test_structure_rejects_unusable_parameters() -> None:
    with pytest.raises(ValueError, match="seed"):
        HSTStructure(["a"], 1, 1, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicates"):
        HSTStructure(["a", "a"], 1, 1, 0)
    with pytest.raises(ValueError, match="empty"):
        HSTStructure([], 1, 1, 0)
    with pytest.raises(ValueError, match="window_size"):
        CompactHST(get_structure(["a"], 1, 1, 0), window_size=0)


def test_from_bytes_rejects_encodings_that_do_not_match() -> None:
    structure = get_structure(["a", "b"], 2, 3, seed=3)
    model = CompactHST(structure, window_size=10)
    for i in range(15):
        model.learn_vec([i / 15, 0.5])
    data = model.to_bytes()

    with pytest.raises(ValueError, match="another structure"):
        CompactHST.from_bytes(get_structure(["a", "b"], 2, 3, seed=4), 10, data)
    with pytest.raises(ValueError, match="window_size=10"):
        CompactHST.from_bytes(structure, 11, data)
    with pytest.raises(ValueError, match="version"):
        CompactHST.from_bytes(structure, 10, bytes([FORMAT_VERSION + 1]) + data[1:])
    with pytest.raises(ValueError, match="expected"):
        CompactHST.from_bytes(structure, 10, data[:-1])
    with pytest.raises(ValueError, match="too short"):
        CompactHST.from_bytes(structure, 10, data[:5])


def test_docstring_examples_print_what_they_claim() -> None:
    failures, attempted = doctest.testmod(hst_module)
    assert attempted > 0
    assert failures == 0
