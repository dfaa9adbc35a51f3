"""The evaluation's metrics: VUS-PR agrees with the TSB-AD benchmark's own implementation,
and the alert-level counts follow their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from tools.evaluation.metrics import alert_quality, anomaly_ranges, pr_auc, roc_auc, vus_pr


def _toy(trial: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The toy cases the reference values below were computed on."""
    rng = np.random.default_rng(0)
    for t in range(trial + 1):
        n = [60, 200, 500, 80, 300, 1000][t]
        y = np.zeros(n, dtype=int)
        for _ in range(rng.integers(1, 4)):
            a = int(rng.integers(0, n - 10))
            y[a : a + int(rng.integers(1, 30))] = 1
        s = np.round(rng.random(n) + y * rng.random() * 1.5, 3)
    return y, s, [10, 20, 100, 5, 0, 50][trial]


# TSB-AD 1.5, TSB_AD/evaluation/basic_metrics.py: generate_curve(y, s, window, "opt", 250)[-1]
# (what its get_metrics reports as VUS-PR), run on _toy(trial).
REFERENCE = [
    0.9357267545934481,
    0.9644688644688642,
    0.6417852093221261,
    1.0,
    0.9481449890316395,
    1.0,
]


@pytest.mark.parametrize("trial", range(len(REFERENCE)))
def test_vus_pr_equals_the_tsb_ad_implementation_on_toy_cases(trial: int) -> None:
    y, s, window = _toy(trial)
    assert vus_pr(y, s, window=window) == pytest.approx(REFERENCE[trial], abs=1e-12)


def test_vus_pr_is_one_for_a_perfect_score_and_lower_for_a_random_one() -> None:
    y = np.zeros(400, dtype=int)
    y[100:120] = 1
    y[300:310] = 1
    assert vus_pr(y, y * 5.0 + 1.0, window=20) == 1.0
    noise = np.random.default_rng(1).random(400)
    assert vus_pr(y, noise, window=20) < 0.3
    assert np.isnan(vus_pr(np.zeros(10, dtype=int), noise[:10]))


def test_auc_and_ranges_on_a_hand_case() -> None:
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.2, 0.9, 0.4, 0.3, 0.8]
    assert roc_auc(y, s) == 1.0
    assert pr_auc(y, s) == 1.0
    assert anomaly_ranges(y) == [(2, 3), (5, 5)]
    assert np.isnan(roc_auc([0, 0], [1, 2]))


def test_alert_quality_counts_windows_caught_and_episodes_inside() -> None:
    y = [0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    opens = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0]  # one false, one 2 rows late in the first window
    q = alert_quality(y, opens)
    assert (q.windows, q.windows_caught, q.episodes, q.episodes_inside) == (2, 1, 3, 1)
    assert q.delays == (2,)
    assert q.recall == 0.5 and q.precision == pytest.approx(1 / 3)
