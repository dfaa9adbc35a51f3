"""The models of the scoring stage (udfs/core/models): each computes what its docstring
says (checked against a batch numpy computation at every step), none looks ahead, each
restores to the same continuation, and each sees the anomaly it exists for."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import numpy as np
import pytest

from tests.outputs import one_nan
from udfs.core.config import MODEL_NAMES, DetectorConfig, ExtremesConfig, ModelConfig
from udfs.core.detector import EntityDetector
from udfs.core.events import Event
from udfs.core.model_config import ResidualConfig
from udfs.core.models.base import Calibration, Context
from udfs.core.models.extremes import ExtremesModel, RangeTracker
from udfs.core.models.residual import ResidualModel, _Gaussian

T0 = 1_767_225_600_000
MIN = 60_000
CAL = Calibration(100, 0.1, 20_000.0, 1.0, 0.0)
NEW = ("extremes", "residual")


def ctx(ts: int, metrics: dict[str, float]) -> Context:
    return Context(ts, metrics, {}, {}, (), 0.5)


def stream(n: int, d: int, seed: int, step_ms: int = 5 * MIN) -> list[Event]:
    """A daily cycle, correlated metrics and noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i * step_ms
        day = math.sin(2 * math.pi * ((t % 86_400_000) / 86_400_000))
        base = 50 + 20 * day + rng.gauss(0, 2)
        metrics = {f"m{j}": base * (1 + 0.1 * j) + rng.gauss(0, 1) for j in range(d)}
        out.append(Event("e", t, metrics))
    return out


def cfg_with(ensemble: tuple[str, ...] = NEW, **sections: Any) -> DetectorConfig:
    return dataclasses.replace(
        DetectorConfig(), model=ModelConfig(ensemble=ensemble), **sections
    )


def scores(events: list[Event], cfg: DetectorConfig) -> list[tuple[int, float, dict[str, float]]]:
    det = EntityDetector("e", cfg)
    out = []
    for ev in events:
        out += det.on_event(ev)
    out += det.flush()
    return [(r["ts_ms"], r["anomaly_score"], r["raw"]) for k, r in out if k == "score"]


# -- batch references at every step --------------------------------------------------------


def test_the_range_tracker_is_the_min_and_max_of_its_blocks_at_every_step() -> None:
    rng = np.random.default_rng(3)
    xs = rng.normal(0, 1, 500)
    r = RangeTracker(blocks=4, size=25)
    for i, x in enumerate(xs):
        if i:
            start = max(0, (i // 25 - 4) * 25)  # the current block and 4 completed ones
            assert r.range() == (xs[start:i].min(), xs[start:i].max()), i
        r.add(float(x))


def test_the_residual_models_baseline_is_the_weighted_mean_and_covariance_at_every_step() -> None:
    """Weights 1/n for the first ``grow_events``, then a constant rate: equal to numpy's
    weighted mean and (biased) covariance with those weights (the learn gate at 10 sd)."""
    cfg = ResidualConfig(grow_events=50, half_life=100.0, warmup_events=10, gate_z=10.0)
    model = ResidualModel(cfg, CAL)
    rng = np.random.default_rng(5)
    xs = rng.normal(0, 1, (300, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]])
    rate = math.log(2) / cfg.half_life
    weights: list[float] = []
    for i, x in enumerate(xs):
        c = ctx(T0 + i * MIN, {f"m{j}": float(v) for j, v in enumerate(x)})
        model.score_one(c)
        model.learn_one(c, False)
        n = i + 1
        w = 1.0 / n if n <= cfg.grow_events and 1.0 / n > rate else rate
        weights = [v * (1 - w) for v in weights] + [w]
        wts = np.array(weights)
        mu = (wts[:, None] * xs[: n]).sum(0) / wts.sum()
        dev = xs[:n] - mu
        cov = (wts[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0) / wts.sum()
        assert np.allclose(model.base.mu, mu, atol=1e-9), i
        assert np.allclose(np.reshape(model.base.cov, (3, 3)), cov, atol=1e-9), i


def test_the_mahalanobis_distance_equals_numpys_solve_on_the_shrunk_correlation() -> None:
    rng = np.random.default_rng(7)
    for d in (1, 2, 4, 19):
        a = rng.normal(0, 1, (50, d)) * rng.uniform(0.5, 3.0, d)
        cov = np.atleast_2d(np.cov(a, rowvar=False, bias=True))
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        mu = a.mean(0)
        v = mu + rng.normal(0, 2, d) * sd
        for shrink in (0.0, 0.3):
            g = _Gaussian(d)
            g.mu, g.cov = list(mu), list(cov.ravel())
            got, zs = g.distance(list(v), [1e-12] * d, 1e9, shrink, 0)
            z = (v - mu) / sd
            r = (1 - shrink) * corr + shrink * np.eye(d)
            assert got == pytest.approx(float(z @ np.linalg.solve(r, z)), rel=1e-9)
            assert np.allclose(zs, z)


# -- nothing looks ahead; restores continue alike ------------------------------------------------


@pytest.mark.parametrize("ensemble", [NEW, *((m,) for m in MODEL_NAMES)])
def test_no_model_reads_the_future(ensemble: tuple[str, ...]) -> None:
    """Scores up to an event are the same whatever comes after it."""
    cfg = cfg_with(ensemble)
    past = stream(900, 3, seed=1)
    a = scores(past + stream(300, 3, seed=2, step_ms=7 * MIN)[:], cfg)
    b = scores(past + [Event("e", past[-1].ts_ms + k * MIN, {"m0": 1e6, "m1": -5.0, "m2": 0.0})
                       for k in range(1, 200)], cfg)
    cut = len(past) - 2  # (the last events wait for the order bound)
    assert a[:cut] == b[:cut]
    assert any(s > 0.5 for _, s, _ in a[:cut])


@pytest.mark.parametrize("cut", [150, 601, 1_333])
def test_a_restored_detector_with_every_model_goes_on_like_the_uninterrupted_one(cut: int) -> None:
    from state.codec import decode, encode

    cfg = cfg_with(MODEL_NAMES)
    events = stream(2_000, 4, seed=3)
    det = EntityDetector("e", cfg)
    for ev in events[:cut]:
        det.on_event(ev)
    restored = EntityDetector.restore("e", cfg, decode(encode(det.snapshot())))
    a = [o for ev in events[cut:] for o in det.on_event(ev)] + det.flush()
    b = [o for ev in events[cut:] for o in restored.on_event(ev)] + restored.flush()
    assert one_nan(a) == one_nan(b)
    # (the event before the cut still waited for the order bound)
    assert sum(1 for k, _ in a if k == "score") == len(events) - cut + 1


# -- each sees what it exists for ------------------------------------------------------------


def test_extremes_scores_a_new_extreme_in_percent_of_the_range_and_nothing_inside() -> None:
    model = ExtremesModel(ExtremesConfig(blocks=2, block_events=10), CAL)
    for i, x in enumerate([0.0, 10.0, 5.0]):
        c = ctx(T0 + i, {"x": x})
        model.score_one(c)
        model.learn_one(c, False)
    assert model.score_one(ctx(T0 + 9, {"x": 7.0})) == 0.0
    assert model.score_one(ctx(T0 + 9, {"x": 12.0})) == pytest.approx(20.0)
    assert model.score_one(ctx(T0 + 9, {"x": -5.0})) == pytest.approx(50.0)
    [c] = model.explain(ctx(T0 + 9, {"x": -5.0}))
    assert (c.metric, c.actual, c.expected, c.z) == ("x", -5.0, 0.0, -0.5)


def test_residual_sees_a_normal_value_at_the_wrong_time_of_day() -> None:
    """Busy by day, quiet by night: the daytime level at 3 am scores far above the same
    level at noon once the slots have been seen on enough days, and the explanation's
    expected value is the night's."""
    model = ResidualModel(ResidualConfig(), CAL)
    rng = random.Random(9)

    def level(t: int) -> float:
        hour = (t % 86_400_000) / 3_600_000
        return 100.0 if 8 <= hour < 20 else 10.0

    t = T0
    for _ in range(6 * 288):  # six days at 5 minutes
        c = ctx(t, {"req": level(t) + rng.gauss(0, 2)})
        model.score_one(c)
        model.learn_one(c, False)
        t += 5 * MIN
    day = t - t % 86_400_000 + 86_400_000
    at_noon = model.score_one(ctx(day + 12 * 3_600_000, {"req": 100.0}))
    at_night = model.score_one(ctx(day + 3 * 3_600_000, {"req": 100.0}))
    assert at_noon is not None and at_night is not None
    assert at_night > 16.0 and at_night > 10 * at_noon
    [c] = model.explain(ctx(day + 3 * 3_600_000, {"req": 100.0}))
    assert c.feature == "req.seasonal" and c.expected < 30.0


def test_without_a_daily_pattern_the_seasonal_residual_scores_like_the_plain_value() -> None:
    """White noise has no time of day: a spike scores the same order with slots trusted as
    with the values themselves (the seasonal profile costs nothing where there is none)."""
    rng = random.Random(10)
    spikes = {}
    for min_days in (3, 10_000):
        model = ResidualModel(ResidualConfig(min_days=min_days), CAL)
        t = T0
        for _ in range(6 * 288):
            c = ctx(t, {"x": 50.0 + rng.gauss(0, 2)})
            model.score_one(c)
            model.learn_one(c, False)
            t += 5 * MIN
        spikes[min_days] = model.score_one(ctx(t, {"x": 60.0}))
        assert model.explain(ctx(t, {"x": 60.0}))[0].feature == (
            "x.seasonal" if min_days == 3 else "x.baseline")
    assert spikes[3] is not None and spikes[10_000] is not None
    assert 0.5 < spikes[3] / spikes[10_000] < 2.0 and spikes[10_000] > 16.0


def test_residual_sees_two_metrics_that_stop_moving_together() -> None:
    """cpu and requests rise and fall together; cpu high with requests low is far from the
    joint baseline although each value is usual on its own."""
    model = ResidualModel(ResidualConfig(), CAL)
    rng = random.Random(11)
    for i in range(2_000):
        load = rng.uniform(0, 100)
        c = ctx(T0 + i * MIN, {"cpu": load + rng.gauss(0, 3), "req": 10 * load + rng.gauss(0, 30)})
        model.score_one(c)
        model.learn_one(c, False)
    together = model.score_one(ctx(T0 + 2_001 * MIN, {"cpu": 90.0, "req": 900.0}))
    apart = model.score_one(ctx(T0 + 2_001 * MIN, {"cpu": 90.0, "req": 100.0}))
    alone = ResidualModel(ResidualConfig(), CAL)
    assert together is not None and apart is not None
    assert apart > 5 * together and apart > 9.21  # chi-square, 2 dof: one in 100
    assert model.dims == ("cpu", "req") and alone.dims == ()


def test_the_learn_gate_keeps_a_long_anomaly_out_of_the_baseline() -> None:
    model = ResidualModel(ResidualConfig(), CAL)
    rng = random.Random(13)
    for i in range(1_000):
        c = ctx(T0 + i * MIN, {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)})
        model.score_one(c)
        model.learn_one(c, False)
    mean_before = list(model.base.mu)
    for i in range(300):  # a long fault: far from the baseline all along
        c = ctx(T0 + (1_000 + i) * MIN, {"a": 40 + rng.gauss(0, 1), "b": rng.gauss(0, 1)})
        model.score_one(c)
        model.learn_one(c, False)
        assert not model.learns_calibration(c) or i < 10
    assert abs(model.base.mu[0] - mean_before[0]) < 0.5
