"""Behaviour of the per-entity multi-scale sliding-window features (udfs.core.features).

The window statistics are checked against pandas ``rolling(closed="left")`` on the bucket
grid and against a brute-force oracle over the documented covered range off the grid.
"""

from __future__ import annotations

import doctest
import importlib.util
import math
import pickle
from collections.abc import Iterator
from dataclasses import replace
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from tests import DATA
from udfs.core import features as features_module
from udfs.core.features import (
    EntityFeatures,
    FeatureConfig,
    WindowSpec,
    feature_names,
    readiness_names,
)

Event = tuple[int, dict[str, float]]
Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Out = tuple[dict[str, float], dict[str, bool]]

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # on every bucket grid used here
STATS = ("mean", "std", "min", "max", "count")

# Every bucket is 2 s wide, so timestamps on a 2 s grid are exactly pandas' windows.
GRID_CFG = FeatureConfig(
    windows=(
        WindowSpec("4s", 4_000, 2),
        WindowSpec("20s", 20_000, 10),
        WindowSpec("2m", 120_000, 60),
    ),
    ratio_pairs=(("4s", "2m"),),
    max_gap_ms=30_000,
    min_count=3,
    robust_windows=("20s",),
    robust_samples_per_bucket=4,
)


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _same(a: Out, b: Out) -> bool:
    """Exact equality of two update() results (NaN equal to NaN)."""
    fa, ra = a
    fb, rb = b
    if ra != rb or list(fa) != list(fb):
        return False
    return all(
        fa[k] == fb[k] or (math.isnan(fa[k]) and math.isnan(fb[k])) for k in fa
    )


def _stream(
    seed: int,
    n: int,
    *,
    scale_ms: float,
    grid_ms: int,
    gap_ms: tuple[int, int],
    metrics: tuple[str, ...] = ("a", "b"),
) -> list[Event]:
    """Random event stream: duplicates, bursts, long gaps, missing metrics, repeated values."""
    rng = np.random.default_rng(seed)
    t = T0 + int(rng.integers(0, 10)) * grid_ms
    out: list[Event] = []
    centre = {m: (50.0, 10.0) if i % 2 == 0 else (-5.0, 2.0) for i, m in enumerate(metrics)}
    for i in range(n):
        r = rng.random()
        if i == 0 or r < 0.15:
            step = 0.0  # duplicate timestamp
        elif r < 0.85:
            step = rng.exponential(scale_ms)
        elif r < 0.96:
            step = rng.uniform(0, scale_ms / 10)  # burst
        else:
            step = rng.uniform(*gap_ms)  # long gap
        t += int(round(step / grid_ms)) * grid_ms
        event: dict[str, float] = {}
        for m in metrics:
            if rng.random() < 0.8:
                mu, sd = centre[m]
                v = mu + sd * rng.standard_normal()
                event[m] = float(round(v)) if rng.random() < 0.2 else float(v)
        out.append((t, event))
    return out


def _run(cfg: FeatureConfig, events: list[Event]) -> list[Out]:
    ef = EntityFeatures(cfg)
    return [ef.update(ts, m) for ts, m in events]


def _series(events: list[Event], metric: str) -> tuple[Ints, Floats, list[int]]:
    """Timestamps, values and stream positions of the events carrying ``metric``."""
    idx = [i for i, (_, m) in enumerate(events) if metric in m]
    ts = np.array([events[i][0] for i in idx], dtype=np.int64)
    vals = np.array([events[i][1][metric] for i in idx], dtype=float)
    return ts, vals, idx


def _brute(ts: Ints, vals: Floats, lo_ts: int, t: int) -> dict[str, float]:
    """Statistics of the values with ``lo_ts <= ts < t``."""
    sl = vals[np.searchsorted(ts, lo_ts, "left") : np.searchsorted(ts, t, "left")]
    n = len(sl)
    return {
        "count": float(n),
        "mean": float(sl.mean()) if n else math.nan,
        "std": float(sl.std(ddof=1)) if n > 1 else math.nan,
        "min": float(sl.min()) if n else math.nan,
        "max": float(sl.max()) if n else math.nan,
    }


def _pandas(
    ts: Ints, vals: Floats, length_ms: int
) -> dict[str, Floats]:
    s = pd.Series(vals, index=pd.to_datetime(ts, unit="ms"))
    r = s.rolling(f"{length_ms}ms", closed="left")
    return {
        "count": s.rolling(f"{length_ms}ms", closed="left", min_periods=0).count().to_numpy(),
        "mean": r.mean().to_numpy(),
        "std": r.std().to_numpy(),
        "min": r.min().to_numpy(),
        "max": r.max().to_numpy(),
    }


def _windows_of(cfg: FeatureConfig) -> Iterator[WindowSpec]:
    yield from cfg.windows


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("seed", range(5))
def test_on_grid_window_stats_equal_pandas_rolling_closed_left(seed: int) -> None:
    events = _stream(seed, 1500, scale_ms=3_000, grid_ms=2_000, gap_ms=(40_000, 300_000))
    outs = _run(GRID_CFG, events)
    checked = 0
    for metric in ("a", "b"):
        ts, vals, idx = _series(events, metric)
        assert len(ts) > 1000
        for w in _windows_of(GRID_CFG):
            ref = _pandas(ts, vals, w.length_ms)
            for j, i in enumerate(idx):
                feats = outs[i][0]
                t = int(ts[j])
                exact = _brute(ts, vals, t - w.length_ms, t)  # two-pass numpy
                for stat in STATS:
                    got = feats[f"{metric}.{w.name}.{stat}"]
                    want = float(ref[stat][j])
                    where = (seed, metric, w.name, stat, t, got, want)
                    if stat == "std" and not math.isnan(want):
                        # pandas' rolling var adds and removes values (Welford), so its own
                        # error is ~eps * mean^2 / std; nearly-equal values (tiny std) need an
                        # absolute slack. The exact two-pass value is matched at 1e-9 below.
                        slack = 1e-9 * max(1.0, abs(exact["mean"]))
                        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=slack), where
                    else:
                        assert _close(got, want), where
                    assert _close(got, exact[stat]), (*where, exact[stat])
                    checked += 1
                count = feats[f"{metric}.{w.name}.count"]
                assert feats[f"{metric}.{w.name}.rate"] == count / (w.length_ms / 1000)
    assert checked > 30_000
    counts = [f["a.2m.count"] for f, _ in outs if "a.2m.count" in f]
    assert max(counts) >= 30 and counts.count(0.0) >= 5  # full windows and post-gap empties


@pytest.mark.parametrize(
    ("cfg", "seed", "scale_ms", "gap_ms", "n"),
    [
        (GRID_CFG, 10, 3_000.0, (40_000, 300_000), 1500),
        (GRID_CFG, 11, 700.0, (40_000, 100_000), 1500),
        (FeatureConfig(), 12, 60_000.0, (700_000, 10_800_000), 2500),
        (FeatureConfig(), 13, 5_000.0, (700_000, 3_600_000), 2500),
    ],
)
def test_off_grid_values_equal_the_covered_range_oracle_and_lie_within_pandas_bounds(
    cfg: FeatureConfig, seed: int, scale_ms: float, gap_ms: tuple[int, int], n: int
) -> None:
    events = _stream(seed, n, scale_ms=scale_ms, grid_ms=1, gap_ms=gap_ms)
    outs = _run(cfg, events)
    for metric in ("a", "b"):
        ts, vals, idx = _series(events, metric)
        means: dict[str, list[float]] = {}
        for w in _windows_of(cfg):
            width = w.width_ms
            inner = _pandas(ts, vals, w.length_ms)  # [t - L, t)
            outer = _pandas(ts, vals, w.length_ms + width)  # [t - L - w, t)
            means[w.name] = []
            for j, i in enumerate(idx):
                t = int(ts[j])
                feats = outs[i][0]
                want = _brute(ts, vals, t - w.length_ms - t % width, t)
                for stat in STATS:
                    got = feats[f"{metric}.{w.name}.{stat}"]
                    assert _close(got, want[stat]), (seed, metric, w.name, stat, t, got, want)
                means[w.name].append(want["mean"])
                count = feats[f"{metric}.{w.name}.count"]
                assert inner["count"][j] <= count <= outer["count"][j]
                if count:
                    lo_min, hi_min = outer["min"][j], inner["min"][j]
                    assert lo_min <= feats[f"{metric}.{w.name}.min"]
                    assert math.isnan(hi_min) or feats[f"{metric}.{w.name}.min"] <= hi_min
                    lo_max, hi_max = inner["max"][j], outer["max"][j]
                    assert feats[f"{metric}.{w.name}.max"] <= hi_max
                    assert math.isnan(lo_max) or lo_max <= feats[f"{metric}.{w.name}.max"]
        for short, long_ in cfg.ratio_pairs:
            for j, i in enumerate(idx):
                s, lg = means[short][j], means[long_][j]
                want_ratio = s / lg if not (math.isnan(s) or math.isnan(lg) or lg == 0) else 1.0
                assert _close(outs[i][0][f"{metric}.{short}_{long_}.ratio"], want_ratio)


def test_zscore_uses_sample_std_and_is_zero_when_std_is_zero_or_undefined() -> None:
    cfg = FeatureConfig(windows=(WindowSpec("10s", 10_000, 10),), ratio_pairs=(), robust_windows=())
    ef = EntityFeatures(cfg)
    f, _ = ef.update(0, {"x": 1.0})
    assert f["x.10s.zscore"] == 0.0 and math.isnan(f["x.10s.std"])
    f, _ = ef.update(1000, {"x": 3.0})  # one value in the window: std undefined
    assert f["x.10s.zscore"] == 0.0 and math.isnan(f["x.10s.std"]) and f["x.10s.mean"] == 1.0
    f, _ = ef.update(2000, {"x": 1.0})  # window {1, 3}: mean 2, std sqrt(2)
    assert f["x.10s.mean"] == 2.0
    assert math.isclose(f["x.10s.std"], math.sqrt(2.0), rel_tol=1e-15)
    assert math.isclose(f["x.10s.zscore"], -1.0 / math.sqrt(2.0), rel_tol=1e-15)
    ef2 = EntityFeatures(cfg)
    for t in range(0, 4000, 1000):
        f, _ = ef2.update(t, {"x": 7.0})
    assert f["x.10s.std"] == 0.0 and f["x.10s.zscore"] == 0.0 and f["x.10s.count"] == 3.0


# --------------------------------------------------------------------------- robust z


def _first_k_oracle(
    ts: Ints, vals: Floats, lo_ts: int, t: int, width: int, k: int
) -> list[float]:
    lo = int(np.searchsorted(ts, lo_ts, "left"))
    hi = int(np.searchsorted(ts, t, "left"))
    kept: dict[int, list[float]] = {}
    for v_ts, v in zip(ts[lo:hi], vals[lo:hi], strict=True):
        bucket = kept.setdefault(int(v_ts) // width, [])
        if len(bucket) < k:
            bucket.append(float(v))
    return [v for b in kept.values() for v in b]


def _rz(x: float, sample: list[float]) -> float:
    if not sample:
        return 0.0
    med = float(np.median(sample))
    mad = float(np.median(np.abs(np.array(sample) - med)))
    return (x - med) / (1.4826 * mad) if mad > 0 else 0.0


@pytest.mark.parametrize("seed", range(3))
def test_rzscore_equals_brute_force_median_mad_when_no_bucket_exceeds_k(seed: int) -> None:
    k = 64
    cfg = FeatureConfig(
        windows=(WindowSpec("20s", 20_000, 10), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(),
        robust_windows=("20s", "1m"),
        robust_samples_per_bucket=k,
    )
    events = _stream(seed, 1200, scale_ms=800, grid_ms=1, gap_ms=(40_000, 90_000))
    outs = _run(cfg, events)
    for metric in ("a", "b"):
        ts, vals, idx = _series(events, metric)
        for w in cfg.windows:
            buckets = np.unique(ts // w.width_ms, return_counts=True)[1]
            assert buckets.max() <= k  # the exact regime
            for j, i in enumerate(idx):
                t = int(ts[j])
                lo_ts = t - w.length_ms - t % w.width_ms
                sl = vals[np.searchsorted(ts, lo_ts, "left") : np.searchsorted(ts, t, "left")]
                want = _rz(float(vals[j]), [float(v) for v in sl])
                got = outs[i][0][f"{metric}.{w.name}.rzscore"]
                assert _close(got, want), (seed, metric, w.name, t, got, want)


@pytest.mark.parametrize("seed", range(3))
def test_rzscore_uses_the_first_k_values_of_each_bucket_when_buckets_overflow(seed: int) -> None:
    events = _stream(seed + 20, 1500, scale_ms=300, grid_ms=1, gap_ms=(40_000, 90_000))
    outs = _run(GRID_CFG, events)
    k = GRID_CFG.robust_samples_per_bucket
    w = GRID_CFG.windows[1]
    overflowed = 0
    for metric in ("a", "b"):
        ts, vals, idx = _series(events, metric)
        for j, i in enumerate(idx):
            t = int(ts[j])
            lo_ts = t - w.length_ms - t % w.width_ms
            sample = _first_k_oracle(ts, vals, lo_ts, t, w.width_ms, k)
            full = int(np.searchsorted(ts, t, "left") - np.searchsorted(ts, lo_ts, "left"))
            overflowed += full > len(sample)
            got = outs[i][0][f"{metric}.{w.name}.rzscore"]
            assert _close(got, _rz(float(vals[j]), sample)), (seed, metric, t)
    assert overflowed > 100  # the subsampling regime was exercised


# --------------------------------------------------------------------------- per-event features


def test_delta_roc_dt_and_cross_ratio_follow_the_previous_event_of_each_metric() -> None:
    cfg = FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 10),),
        ratio_pairs=(),
        robust_windows=(),
        cross_ratios=(("io", "cpu"),),
    )
    ef = EntityFeatures(cfg)
    f, _ = ef.update(1_000, {"cpu": 2.0, "io": 5.0})
    assert math.isnan(f["cpu.delta"]) and math.isnan(f["cpu.roc"]) and math.isnan(f["cpu.dt"])
    assert f["io_per_cpu.value"] == 2.5
    f, _ = ef.update(3_000, {"cpu": 6.0})
    assert (f["cpu.delta"], f["cpu.roc"], f["cpu.dt"]) == (4.0, 2.0, 2.0)
    assert "io_per_cpu.value" not in f and "io.delta" not in f
    f, _ = ef.update(3_000, {"cpu": 5.0, "io": 1.0})  # duplicate timestamp for cpu
    assert (f["cpu.delta"], f["cpu.roc"], f["cpu.dt"]) == (-1.0, 0.0, 0.0)
    assert (f["io.delta"], f["io.roc"], f["io.dt"]) == (-4.0, -2.0, 2.0)
    assert f["io_per_cpu.value"] == 0.2
    f, _ = ef.update(4_000, {"cpu": 0.0, "io": 1.0})
    assert math.isnan(f["io_per_cpu.value"])
    assert list(f) == feature_names(cfg, ["io", "cpu"])


def test_duplicate_timestamps_are_excluded_from_the_window_until_a_later_timestamp() -> None:
    cfg = FeatureConfig(windows=(WindowSpec("10s", 10_000, 10),), ratio_pairs=(), robust_windows=())
    ef = EntityFeatures(cfg)
    ef.update(0, {"x": 1.0})
    f1, _ = ef.update(1_000, {"x": 10.0})
    f2, _ = ef.update(1_000, {"x": 20.0})
    f3, _ = ef.update(1_000, {"x": 30.0})
    assert f1["x.10s.count"] == f2["x.10s.count"] == f3["x.10s.count"] == 1.0
    f4, _ = ef.update(2_000, {"x": 0.0})
    assert (f4["x.10s.count"], f4["x.10s.mean"], f4["x.10s.max"]) == (4.0, 15.25, 30.0)


def test_window_ratio_is_short_mean_over_long_mean_and_neutral_when_undefined() -> None:
    cfg = FeatureConfig(
        windows=(WindowSpec("2s", 2_000, 2), WindowSpec("10s", 10_000, 10)),
        ratio_pairs=(("2s", "10s"),),
        robust_windows=(),
    )
    ef = EntityFeatures(cfg)
    assert ef.update(0, {"x": 1.0})[0]["x.2s_10s.ratio"] == 1.0  # both undefined
    for t, v in ((1_000, 1.0), (2_000, 1.0), (3_000, 4.0), (4_000, 4.0)):
        ef.update(t, {"x": v})
    f, _ = ef.update(5_000, {"x": 0.0})  # 2s: {4, 4}, 10s: {1, 1, 1, 4, 4}
    assert f["x.2s_10s.ratio"] == 4.0 / (11.0 / 5.0)
    f, _ = ef.update(20_000, {"x": -1.0})  # long window: {0}, mean 0 -> neutral
    assert f["x.2s_10s.ratio"] == 1.0


def test_non_finite_values_are_treated_as_missing() -> None:
    cfg = GRID_CFG
    events = _stream(3, 300, scale_ms=3_000, grid_ms=2_000, gap_ms=(40_000, 90_000))
    noisy = [(t, {**m, "a": math.nan}) if i % 7 == 3 and "a" in m else (t, m)
             for i, (t, m) in enumerate(events)]
    clean = [(t, {k: v for k, v in m.items() if not math.isnan(v)}) for t, m in noisy]
    for a, b in zip(_run(cfg, noisy), _run(cfg, clean), strict=True):
        assert _same(a, b)


# --------------------------------------------------------------------------- readiness, missing


def test_window_is_not_ready_until_covered_after_first_event_and_after_a_long_gap() -> None:
    cfg = FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 10),),
        ratio_pairs=(),
        robust_windows=(),
        max_gap_ms=5_000,
        min_count=3,
    )
    ef = EntityFeatures(cfg)
    ready = {t: ef.update(t, {"x": 1.0})[1]["x.10s"] for t in range(0, 11_000, 1_000)}
    assert [t for t, r in ready.items() if r] == [10_000]  # t - L >= first ts
    # A gap of exactly max_gap_ms is not "longer than": still ready.
    assert ef.update(15_000, {"x": 1.0})[1]["x.10s"]
    # A gap of 5.001 s ending at 20.001 s: not ready until t - 10 s >= 20.001 s.
    after = {t: ef.update(t, {"x": 1.0})[1]["x.10s"] for t in range(20_001, 33_000, 1_000)}
    assert [t for t, r in after.items() if r] == [30_001, 31_001, 32_001]


@pytest.mark.parametrize(("n_events", "ready"), [(2, False), (3, True)])
def test_a_covered_window_is_ready_once_it_holds_min_count_events(
    n_events: int, ready: bool
) -> None:
    cfg = FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 10),), ratio_pairs=(), robust_windows=(),
        max_gap_ms=60_000, min_count=3,
    )
    ef = EntityFeatures(cfg)
    for i in range(n_events):
        ef.update(i * 1_000, {"x": 1.0})
    f, r = ef.update(10_000, {"x": 1.0})  # covered: t - L == first ts
    assert f["x.10s.count"] == n_events and r["x.10s"] is ready


def test_readiness_is_keyed_per_metric_and_window_for_the_metrics_of_the_event() -> None:
    ef = EntityFeatures(GRID_CFG)
    _, ready = ef.update(T0, {"b": 1.0, "a": 2.0})
    assert list(ready) == readiness_names(GRID_CFG, ["a", "b"])
    _, ready = ef.update(T0 + 2_000, {"b": 1.0})
    assert list(ready) == ["b.4s", "b.20s", "b.2m"]


def test_a_missing_metric_leaves_the_other_metric_and_its_own_state_untouched() -> None:
    events = _stream(7, 800, scale_ms=2_000, grid_ms=1, gap_ms=(40_000, 90_000))
    both = [(t, {"a": m.get("a", 1.0), "b": m.get("b", 2.0)}) for t, m in events]
    dropped = {i for i in range(len(both)) if i % 3 == 1}
    partial = [(t, {"a": m["a"]} if i in dropped else m) for i, (t, m) in enumerate(both)]
    full_out = _run(GRID_CFG, both)
    part_out = _run(GRID_CFG, partial)
    b_alone = [(t, {"b": m["b"]}) for i, (t, m) in enumerate(both) if i not in dropped]
    only_b = _run(GRID_CFG, b_alone)
    it_b = iter(only_b)
    for i, (f_full, f_part) in enumerate(zip(full_out, part_out, strict=True)):
        a_full = {k: v for k, v in f_full[0].items() if k.startswith("a.")}
        a_part = {k: v for k, v in f_part[0].items() if k.startswith("a.")}
        assert _same((a_full, {}), (a_part, {}))
        if i in dropped:
            assert not any(k.startswith("b.") for k in f_part[0])
        else:
            b_part = {k: v for k, v in f_part[0].items() if k.startswith("b.")}
            b_ready = {k: v for k, v in f_part[1].items() if k.startswith("b.")}
            assert _same((b_part, b_ready), next(it_b))


def test_new_metrics_can_appear_at_any_time_and_metrics_order_is_sorted() -> None:
    ef = EntityFeatures(GRID_CFG)
    ef.update(T0, {"zeta": 1.0})
    f, r = ef.update(T0 + 60_000, {"alpha": 3.0, "zeta": 2.0})
    assert ef.metrics_order == ["alpha", "zeta"]
    assert list(f) == feature_names(GRID_CFG, ["zeta", "alpha"])
    assert f["alpha.2m.count"] == 0.0 and f["zeta.2m.count"] == 1.0
    assert not r["alpha.2m"]


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("cfg", [GRID_CFG, FeatureConfig()], ids=["grid", "default"])
def test_restore_mid_stream_gives_identical_subsequent_features(cfg: FeatureConfig) -> None:
    events = _stream(5, 2000, scale_ms=1_500, grid_ms=1, gap_ms=(700_000, 3_600_000))
    reference = _run(cfg, events)
    for cut in (1, 700, 1333):
        ef = EntityFeatures(cfg)
        for t, m in events[:cut]:
            ef.update(t, m)
        snap = pickle.loads(pickle.dumps(ef.snapshot()))
        restored = EntityFeatures.restore(cfg, snap)
        assert restored.snapshot() == ef.snapshot()
        for j, (t, m) in enumerate(events[cut:], start=cut):
            assert _same(restored.update(t, m), reference[j]), (cut, j)
    assert _same(EntityFeatures.restore(cfg, EntityFeatures(cfg).snapshot()).update(T0, {"a": 1.0}),
                 EntityFeatures(cfg).update(T0, {"a": 1.0}))


@pytest.mark.parametrize(
    "cfg",
    [GRID_CFG, FeatureConfig(), replace(GRID_CFG, robust_windows=("4s", "20s"))],
    ids=["grid", "default", "robust"],
)
def test_scoring_only_features_are_the_full_ones_read_by_the_scorer_and_change_the_same_state(
    cfg: FeatureConfig,
) -> None:
    """update(full=False): each window's mean and std and the ratios (all, for metrics seen
    before), bit for bit those of update(full=True), the same readiness, the same state."""
    events = _stream(5, 1500, scale_ms=1_500, grid_ms=1, gap_ms=(700_000, 3_600_000))
    full, lean = EntityFeatures(cfg), EntityFeatures(cfg)
    seen: set[str] = set()
    for t, m in events:
        (ff, fr), (lf, lr) = full.update(t, m), lean.update(t, m, full=False)
        assert lr == fr
        kept = [
            k for k in ff
            if k.endswith((".mean", ".std", ".ratio")) or k.split(".", 1)[0] not in seen
        ]
        assert list(lf) == kept
        assert _same((lf, lr), ({k: ff[k] for k in kept}, fr))
        assert lean.pack() == full.pack()
        seen |= set(m)
    assert len(ff) > len(lf) > 0


@pytest.mark.parametrize("cfg", [GRID_CFG, FeatureConfig()], ids=["grid", "default"])
def test_packed_state_restores_to_identical_subsequent_features(cfg: FeatureConfig) -> None:
    events = _stream(5, 2000, scale_ms=1_500, grid_ms=1, gap_ms=(700_000, 3_600_000))
    reference = _run(cfg, events)
    for cut in (0, 1, 700, 1333):
        ef = EntityFeatures(cfg)
        for t, m in events[:cut]:
            ef.update(t, m)
        packed = pickle.loads(pickle.dumps(ef.pack()))
        restored = EntityFeatures.restore(cfg, packed)
        assert restored.snapshot() == ef.snapshot()
        assert restored.pack() == ef.pack()
        # A plain snapshot restored, then packed, continues the same way too.
        via_plain = EntityFeatures.restore(cfg, ef.snapshot())
        for j, (t, m) in enumerate(events[cut:], start=cut):
            assert _same(restored.update(t, m), reference[j]), (cut, j)
            assert _same(via_plain.update(t, m), reference[j]), (cut, j)
    other = FeatureConfig(windows=(WindowSpec("4s", 4_000, 4),), ratio_pairs=(), robust_windows=())
    with pytest.raises(ValueError, match="layout"):
        EntityFeatures.restore(other, EntityFeatures(cfg).pack())


def _close_out(a: Out, b: Out) -> bool:
    """Two update() results with the same keys and readiness, the values equal up to
    floating-point rounding."""
    fa, ra = a
    fb, rb = b
    return ra == rb and list(fa) == list(fb) and all(_close(fa[k], fb[k]) for k in fa)


@pytest.mark.parametrize("name", ["grid", "default"])
def test_state_written_before_windows_had_a_front_restores_and_continues(name: str) -> None:
    """Snapshots (version 1) and packed state (version 2) written by the code before the
    windows kept a front (commit 1bc54c4; tests/data/features_state_v1_v2.pickle holds what
    it wrote for this stream at two cuts) restore, and continue as an uninterrupted run up to
    floating-point rounding (the windows' aggregates were folded in another order); saved
    again, they are the current versions."""
    cfg = {"grid": GRID_CFG, "default": FeatureConfig()}[name]
    events = _stream(5, 2000, scale_ms=1_500, grid_ms=1, gap_ms=(700_000, 3_600_000))
    reference = _run(cfg, events)
    with open(DATA / "features_state_v1_v2.pickle", "rb") as f:
        fixture = pickle.load(f)
    for cut in (700, 1333):
        snap, packed = fixture[(name, cut)]
        assert (snap[0], packed[0]) == (1, 2)
        for old in (snap, packed):
            restored = EntityFeatures.restore(cfg, old)
            assert (restored.snapshot()[0], restored.pack()[0]) == (3, 4)
            for j, (t, m) in enumerate(events[cut:], start=cut):
                assert _close_out(restored.update(t, m), reference[j]), (cut, j)


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "plain"])
def test_state_of_other_robust_settings_restores_into_the_configured_ones(pack: bool) -> None:
    # State written before robust z became opt-in (robust 1h, k=8) restores under today's
    # default (no robust window) and under a smaller k exactly as if the entity had always
    # run under that configuration; a window that becomes robust starts its samples empty.
    old = FeatureConfig(robust_windows=("1h",), robust_samples_per_bucket=8)
    events = _stream(2, 1500, scale_ms=20_000, grid_ms=1, gap_ms=(700_000, 3_600_000))
    cut = 1000
    ef = EntityFeatures(old)
    for t, m in events[:cut]:
        ef.update(t, m)
    snap = pickle.loads(pickle.dumps(ef.pack() if pack else ef.snapshot()))
    for new in (FeatureConfig(robust_windows=()), replace(old, robust_samples_per_bucket=3)):
        always = EntityFeatures(new)
        for t, m in events[:cut]:
            always.update(t, m)
        restored = EntityFeatures.restore(new, snap)
        assert restored.snapshot() == always.snapshot()  # (pack() also has stale slots)
        for t, m in events[cut:]:
            assert _same(restored.update(t, m), always.update(t, m))
    wider = replace(old, robust_windows=("1h", "5m"))
    restored = EntityFeatures.restore(wider, snap)
    for t, m in events[cut:]:
        got, ready = restored.update(t, m)
        want, want_ready = ef.update(t, m)
        assert ready == want_ready
        assert _same(({k: v for k, v in got.items() if ".5m.rzscore" not in k}, ready),
                     (want, want_ready))
    assert ".5m.rzscore" in " ".join(got)


def test_a_young_entity_packs_about_as_small_as_its_plain_snapshot() -> None:
    # Sparse windows are packed slot by slot: empty buckets cost nothing.
    ef = EntityFeatures(FeatureConfig())
    for i in range(2):
        ef.update(T0 + i * 20_000, {"a": 1.0 + i, "b": 2.0, "c": 3.0, "d": 4.0})
    packed = len(pickle.dumps(ef.pack(), protocol=5))
    plain = len(pickle.dumps(ef.snapshot(), protocol=5))
    assert packed <= plain + 400, (packed, plain)
    assert EntityFeatures.restore(FeatureConfig(), ef.pack()).snapshot() == ef.snapshot()


def test_robust_z_kept_sorted_as_buckets_turn_equals_a_fresh_computation_to_the_bit() -> None:
    # The robust windows keep their samples sorted incrementally; a restored instance
    # rebuilds that order from the buckets. Zeros of both signs and repeated values included.
    cfg = FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 10), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(), robust_windows=("10s", "1m"), robust_samples_per_bucket=3,
    )
    rng = np.random.default_rng(11)
    ef = EntityFeatures(cfg)
    t = T0
    for _ in range(3000):
        t += int(rng.choice([0, 500, 1000, 4000, 70_000]))
        x = float(rng.choice([0.0, -0.0, 1.0, -1.0, 2.5, round(float(rng.normal(5, 2)), 1)]))
        fresh = EntityFeatures.restore(cfg, ef.snapshot())
        want, _ = fresh.update(t, {"a": x})
        got, _ = ef.update(t, {"a": x})
        assert repr(got) == repr(want)


def _plain(obj: object) -> bool:
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, str, bool)


def test_snapshot_is_plain_data_and_restore_rejects_another_layout() -> None:
    ef = EntityFeatures(GRID_CFG)
    for t, m in _stream(1, 200, scale_ms=1_000, grid_ms=1, gap_ms=(40_000, 90_000)):
        ef.update(t, m)
    snap = ef.snapshot()
    assert _plain(snap)
    other = FeatureConfig(windows=(WindowSpec("4s", 4_000, 4),), ratio_pairs=(), robust_windows=())
    with pytest.raises(ValueError, match="layout"):
        EntityFeatures.restore(other, snap)


def _snapshot_size(cfg: FeatureConfig, n: int, step_ms: int, per_ts: int = 1) -> int:
    ef = EntityFeatures(cfg)
    rng = np.random.default_rng(0)
    vals = 50.0 + rng.standard_normal(n)
    for i in range(n):
        ef.update(T0 + (i // per_ts) * step_ms, {"a": float(vals[i])})
    return len(pickle.dumps(ef.snapshot(), protocol=pickle.HIGHEST_PROTOCOL))


def test_state_size_does_not_grow_with_the_number_of_events() -> None:
    small = FeatureConfig(
        windows=(WindowSpec("10s", 10_000, 10), WindowSpec("1m", 60_000, 6)),
        ratio_pairs=(("10s", "1m"),),
        robust_windows=("1m",),
    )
    # 10 events per second: 1k events already fill both windows, 100k events span ~2.8 h.
    size_1k = _snapshot_size(small, 1_000, 100)
    size_100k = _snapshot_size(small, 100_000, 100)
    assert abs(size_100k - size_1k) <= 16, (size_1k, size_100k)
    # The default windows (up to 24 h) at one event a minute: 2 days vs 2 weeks.
    size_2d = _snapshot_size(FeatureConfig(), 2 * 1440, 60_000)
    size_2w = _snapshot_size(FeatureConfig(), 14 * 1440, 60_000)
    assert abs(size_2w - size_2d) <= 16, (size_2d, size_2w)


def test_a_burst_of_duplicate_timestamps_keeps_the_state_bounded() -> None:
    burst = _snapshot_size(GRID_CFG, 10_000, 1_000, per_ts=10_000)  # 10k events, one ts
    few = _snapshot_size(GRID_CFG, 10, 1_000, per_ts=10)
    assert abs(burst - few) <= 4, (burst, few)  # only the pending count's int width differs


# --------------------------------------------------------------------------- contract


def test_decreasing_timestamp_raises_naming_metric_and_timestamps_and_changes_nothing() -> None:
    ef = EntityFeatures(GRID_CFG)
    ef.update(10_000, {"cpu": 1.0})
    ef.update(12_000, {"mem": 1.0})
    before = ef.snapshot()
    with pytest.raises(ValueError, match=r"'cpu'.*10000.*9999"):
        ef.update(9_999, {"cpu": 2.0})
    with pytest.raises(ValueError, match=r"12000.*11000"):
        ef.update(11_000, {"cpu": 2.0})  # cpu itself is older, but the entity is not
    assert ef.snapshot() == before
    ef.update(12_000, {"cpu": 2.0})  # equal timestamps are fine


def test_default_feature_names_of_one_metric() -> None:
    names = feature_names(FeatureConfig(), ["cpu"])
    per_window = ["mean", "std", "zscore", "min", "max", "count", "rate"]
    want = [f"cpu.{w}.{s}" for w in ("1m", "5m") for s in per_window]
    want += [f"cpu.{w}.{s}" for w in ("1h", "24h") for s in per_window]
    want += ["cpu.1m_1h.ratio", "cpu.delta", "cpu.roc", "cpu.dt"]
    assert names == want
    f, r = EntityFeatures(FeatureConfig()).update(T0, {"cpu": 1.0})
    assert list(f) == want and list(r) == ["cpu.1m", "cpu.5m", "cpu.1h", "cpu.24h"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"windows": (WindowSpec("a", 1000, 10), WindowSpec("a", 2000, 10))}, "duplicate"),
        ({"ratio_pairs": (("1m", "2h"),)}, "ratio_pairs.*'2h'"),
        ({"robust_windows": ("7d",)}, "robust_windows.*'7d'"),
        ({"max_gap_ms": 0}, "max_gap_ms.*0"),
        ({"min_count": -1}, "min_count.*-1"),
        ({"robust_samples_per_bucket": 0}, "robust_samples_per_bucket.*0"),
        ({"windows": ()}, "windows"),
    ],
)
def test_invalid_config_is_rejected_naming_the_field_and_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)  # type: ignore[arg-type]


def test_window_spec_buckets_must_divide_the_length() -> None:
    with pytest.raises(ValueError, match="buckets=7.*length_ms=60000"):
        WindowSpec("1m", 60_000, 7)


def test_yaml_style_lists_and_mappings_are_accepted_as_config() -> None:
    cfg = FeatureConfig(
        windows=[{"name": "1m", "length_ms": 60_000, "buckets": 12}],  # type: ignore[arg-type]
        ratio_pairs=[],  # type: ignore[arg-type]
        robust_windows=["1m"],  # type: ignore[arg-type]
        cross_ratios=[["io", "cpu"]],  # type: ignore[arg-type]
    )
    assert cfg.windows == (WindowSpec("1m", 60_000, 12),)
    assert cfg.cross_ratios == (("io", "cpu"),)
    hash(cfg)


def pure_features() -> ModuleType:
    """udfs/core/features.py loaded under another name, so that it keeps its own classes
    rather than the compiled copy (udfs/core/native.py; tests/core/test_native.py)."""
    spec = importlib.util.spec_from_file_location("features_pure_for_test", features_module.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_examples_run() -> None:
    result = doctest.testmod(features_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    # EntityFeatures' own examples, from the pure module: a compiled copy keeps no docstrings.
    pure = pure_features()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(pure.EntityFeatures, "EntityFeatures", globs=vars(pure)):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
