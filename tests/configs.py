"""Detector settings shared by tests (no pyflink import, so core-only tests can use them)."""

from __future__ import annotations

# Small windows and short warm-ups, so a few hours of events warm every window, the
# calibration and the threshold up; overrides in the `--set` syntax of job.config.
FAST = [
    "detector.features.windows=[{name: 1m, length_ms: 60000, buckets: 6}, {name: 10m, length_ms: 600000, buckets: 10}, {name: 1h, length_ms: 3600000, buckets: 12}]",
    "detector.features.ratio_pairs=[[1m, 1h]]",
    "detector.features.robust_windows=[1h]",
    "detector.threshold.min_events=200",
    "detector.model.hst_window=50",
    "detector.model.min_calibration_events=50",
    "detector.alerts.quiet_period_ms=300000",
    "detector.alerts.cooldown_ms=600000",
]
