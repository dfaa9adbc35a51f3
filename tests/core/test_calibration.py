"""Per-entity calibration (udfs.core.calibration): the decayed histogram is an ECDF, its
decay halves an observation's weight every ``half_life`` updates, it survives a snapshot,
and the adaptive threshold is the entity's own (1 - rate) quantile, never below the floor."""

from __future__ import annotations

import math
import random

import pytest

from udfs.core.calibration import (
    AdaptiveThreshold,
    DecayedHistogram,
    linear_edges,
    stored_length,
    trim_zeros,
    untrim_zeros,
)

NO_DECAY = 1e18  # 2 ** (1 / NO_DECAY) == 1.0 exactly: every observation weighs 1


def test_no_decay_half_life_really_means_unit_weights() -> None:
    assert 2.0 ** (1.0 / NO_DECAY) == 1.0


def test_survival_equals_brute_force_ecdf_at_every_bin_edge() -> None:
    h = DecayedHistogram(linear_edges(0.0, 10.0, 20), half_life=NO_DECAY)
    rng = random.Random(11)
    values = [rng.uniform(0.0, 10.0) for _ in range(500)]
    values += [h.edges[rng.randrange(0, 20)] for _ in range(100)]  # ties on the edges
    for v in values:
        h.update(v)
    n = len(values)
    for edge in h.edges:
        at_or_above = sum(1 for v in values if v >= edge)
        # The documented half-observation prior: (k + 1/2) / (n + 1).
        assert h.survival(edge) == (at_or_above + 0.5) / (n + 1), edge


def test_survival_is_uniform_inside_a_bin() -> None:
    h = DecayedHistogram(linear_edges(0.0, 4.0, 4), half_life=NO_DECAY)
    for v in (0.2, 1.5, 1.5, 1.9, 3.0):
        h.update(v)
    # Bin [1, 2) holds 3 of 5; x = 1.25 leaves three quarters of it above, plus 3.0 above.
    assert h.survival(1.25) == pytest.approx((1 + 3 * 0.75 + 0.5) / 6, rel=1e-15)


def test_values_outside_the_edges_count_in_the_end_bins() -> None:
    h = DecayedHistogram(linear_edges(0.0, 1.0, 10), half_life=NO_DECAY)
    for v in (-5.0, 0.5, 99.0):
        h.update(v)
    assert h.survival(0.0) == (3 + 0.5) / 4
    assert h.survival(h.edges[9]) == (1 + 0.5) / 4  # 99 sits in the last bin [0.9, 1.0]


def test_empty_histogram_survival_is_one() -> None:
    assert DecayedHistogram(linear_edges(0.0, 1.0, 4), half_life=10.0).survival(0.7) == 1.0


def test_exponential_tail_ranks_far_beyond_above_just_beyond() -> None:
    h = DecayedHistogram(linear_edges(0.0, 10.0, 10), half_life=NO_DECAY)
    for v in range(5):
        h.update(v + 0.5)  # highest mass in [4, 5)
    top = h.survival(5.0)
    assert h.survival(6.0, tail_scale=1.0) == pytest.approx(top * math.exp(-1.0), rel=1e-12)
    assert h.survival(8.0, tail_scale=1.0) == pytest.approx(top * math.exp(-3.0), rel=1e-12)
    assert h.survival(8.0) == top  # no tail: flat beyond the data


def _bin_mass(h: DecayedHistogram, i: int) -> float:
    """Mass of bin ``i`` up to the common normaliser: a difference of survivals."""
    return h.survival(h.edges[i]) - h.survival(h.edges[i + 1])


@pytest.mark.parametrize("half_life", [1, 8, 250])
def test_observation_weighs_half_after_half_life_updates(half_life: int) -> None:
    edges = linear_edges(0.0, 3.0, 3)
    h = DecayedHistogram(edges, half_life=float(half_life))
    h.update(0.5)  # the old point mass, bin 0
    for _ in range(half_life - 1):
        h.update(1.5)  # filler, bin 1
    h.update(2.5)  # the new point mass, bin 2: half_life updates after the old one
    assert _bin_mass(h, 0) / _bin_mass(h, 2) == pytest.approx(0.5, rel=1e-12)


def test_observation_weighs_a_quarter_after_two_half_lives() -> None:
    h = DecayedHistogram(linear_edges(0.0, 3.0, 3), half_life=10.0)
    h.update(0.5)
    for _ in range(19):
        h.update(1.5)
    h.update(2.5)
    assert _bin_mass(h, 0) / _bin_mass(h, 2) == pytest.approx(0.25, rel=1e-12)


def test_decay_stays_exact_across_renormalisation() -> None:
    # half_life=1 doubles the weight per update: renormalisation (at 1e150) happens about
    # every 500 updates, so 3,000 updates cross it several times.
    h = DecayedHistogram(linear_edges(0.0, 3.0, 3), half_life=1.0)
    for _ in range(3000):
        h.update(1.5)
    h.update(0.5)
    h.update(1.5)
    h.update(2.5)
    assert _bin_mass(h, 0) / _bin_mass(h, 2) == pytest.approx(0.25, rel=1e-9)
    assert 0.0 < h.survival(0.0) <= 1.0 and math.isfinite(h.n)


def test_histogram_snapshot_restore_continues_identically() -> None:
    edges = linear_edges(0.0, 7.0, 140)
    rng = random.Random(3)
    a = DecayedHistogram(edges, half_life=50.0)
    for _ in range(700):
        a.update(rng.expovariate(1.0))
    b = DecayedHistogram(edges, half_life=50.0)
    b.restore(a.snapshot())
    for _ in range(300):
        v = rng.expovariate(1.0)
        a.update(v)
        b.update(v)
    for x in (0.0, 0.3, 1.0, 2.2, 6.9, 9.0):
        assert b.survival(x, 0.25) == a.survival(x, 0.25)
    assert b.quantile_upper(0.01) == a.quantile_upper(0.01)
    assert b.n == a.n


def test_a_histogram_is_stored_without_its_empty_end_bins_and_reads_back_exactly() -> None:
    edges = linear_edges(0.0, 8.0, 128)
    h = DecayedHistogram(edges, half_life=50.0)
    assert h.snapshot()[0] == (128, 128, [])  # a fresh histogram stores no bin
    for v in (2.0, 2.01, 3.5):
        h.update(v)
    stored = h.snapshot()[0]
    assert isinstance(stored, tuple) and stored[0] == 128 and len(stored[2]) < 128
    full = list(h._counts)
    assert stored[2][0] > 0.0 and stored[2][-1] > 0.0
    for snap in (h.snapshot(), (full, *h.snapshot()[1:])):  # (an earlier release's: in full)
        b = DecayedHistogram(edges, half_life=50.0)
        b.restore(snap)
        assert [c.hex() for c in b._counts] == [c.hex() for c in full]
        for x in (0.0, 2.0, 3.0, 9.0):
            assert b.survival(x, 0.25) == h.survival(x, 0.25)


def test_trimmed_float_lists_keep_every_bit() -> None:
    nan = float("nan")
    for values in ([], [0.0], [-0.0, 0.0], [0.0, 5e-324, 0.0], [0.0, nan, 0.0, 0.0], [1.0, 0.0, -0.0], [2.0]):
        stored = trim_zeros(values)
        back = untrim_zeros(stored)
        assert [v.hex() for v in back] == [v.hex() for v in values]
        assert stored_length(stored) == len(values)
    assert trim_zeros([0.0, -0.0, 0.0]) == (3, 1, [-0.0])


def test_histogram_restore_rejects_another_bin_count() -> None:
    a = DecayedHistogram(linear_edges(0.0, 1.0, 10), half_life=5.0)
    b = DecayedHistogram(linear_edges(0.0, 1.0, 20), half_life=5.0)
    with pytest.raises(ValueError, match="10 bins.*20"):
        b.restore(a.snapshot())


def test_effective_count_without_decay_is_the_number_of_updates() -> None:
    h = DecayedHistogram(linear_edges(0.0, 1.0, 4), half_life=NO_DECAY)
    for _ in range(37):
        h.update(0.3)
    assert h.n == 37.0


def test_effective_count_is_in_units_of_the_newest_observation() -> None:
    h = DecayedHistogram(linear_edges(0.0, 1.0, 4), half_life=1.0)
    h.update(0.3)
    assert h.n == 1.0


# -- adaptive threshold --------------------------------------------------------------------


def test_threshold_uses_the_fallback_until_min_events_scores() -> None:
    t = AdaptiveThreshold(target_rate=0.01, min_events=100, half_life=NO_DECAY, fallback_margin=0.5)
    assert t.current() == 2.5  # -log10(0.01) + 0.5, before any score
    for _ in range(99):
        t.update(0.0)
    assert t.current() == 2.5
    t.update(0.0)
    assert t.current() == 2.0  # its own quantile (0.06) is below the floor -log10(0.01)


@pytest.mark.parametrize(("rate", "expected"), [(0.01, 4.0), (0.05, 2.0 * -math.log10(0.05))])
def test_threshold_approaches_the_one_minus_rate_quantile(rate: float, expected: float) -> None:
    # u = 2 * (-log10 U) with U uniform: P(u >= t) = 10 ** (-t / 2), so the (1 - rate)
    # quantile is -2 * log10(rate): 4.0 for 1 %, 2.60 for 5 %, both above the floor.
    rng = random.Random(2026)
    t = AdaptiveThreshold(
        target_rate=rate, min_events=1000, half_life=NO_DECAY, fallback_margin=0.5
    )
    for _ in range(30_000):
        t.update(-2.0 * math.log10(1.0 - rng.random()))
    assert t.current() == pytest.approx(expected, abs=0.15)


def test_threshold_never_goes_below_minus_log10_rate() -> None:
    # u = 0.5 * (-log10 U): its 1 % quantile is 1.0, below the floor 2.0.
    rng = random.Random(5)
    t = AdaptiveThreshold(target_rate=0.01, min_events=100, half_life=500.0, fallback_margin=1.0)
    for i in range(5000):
        t.update(-0.5 * math.log10(1.0 - rng.random()))
        if i >= 2000:
            assert t.current() >= 2.0
    assert t.current() == 2.0


def test_threshold_snapshot_restore_gives_the_same_threshold() -> None:
    rng = random.Random(8)
    a = AdaptiveThreshold(0.01, 50, 300.0, 0.5)
    for _ in range(400):
        a.update(rng.uniform(0.0, 6.0))
    b = AdaptiveThreshold(0.01, 50, 300.0, 0.5)
    b.restore(a.snapshot())
    assert b.current() == a.current() and b.updates == a.updates == 400


def test_threshold_leaves_the_fallback_after_min_events_even_with_short_half_life() -> None:
    t = AdaptiveThreshold(target_rate=0.01, min_events=2000, half_life=1000.0, fallback_margin=0.5)
    for _ in range(10_000):
        t.update(0.0)
    assert t.current() == 2.0


def test_threshold_without_a_target_rate_fades_from_floor_plus_margin_to_the_floor() -> None:
    t = AdaptiveThreshold(target_rate=0.0, min_events=10, half_life=NO_DECAY, fallback_margin=2.0, floor=1.75)
    seen = [t.current()]
    for _ in range(50):
        t.update(5.0)  # what it is fed does not matter: only how many
        seen.append(t.current())
    assert seen[0] == pytest.approx(3.75) and seen[5] == pytest.approx(2.75)
    assert all(a > b for a, b in zip(seen[:10], seen[1:11], strict=True))
    assert set(seen[10:]) == {1.75} and t.updates == 50
    b = AdaptiveThreshold(target_rate=0.0, min_events=10, half_life=NO_DECAY, fallback_margin=2.0, floor=1.75)
    for _ in range(5):
        b.update(0.0)
    c = AdaptiveThreshold(target_rate=0.0, min_events=10, half_life=NO_DECAY, fallback_margin=2.0, floor=1.75)
    c.restore(b.snapshot())
    assert c.current() == b.current() == pytest.approx(2.75)


def test_threshold_with_a_target_rate_never_goes_below_an_explicit_floor() -> None:
    t = AdaptiveThreshold(target_rate=0.05, min_events=10, half_life=NO_DECAY, fallback_margin=0.5, floor=3.0)
    assert t.current() == 3.5
    for _ in range(50):
        t.update(0.0)
    assert t.current() == 3.0
