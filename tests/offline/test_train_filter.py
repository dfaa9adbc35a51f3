"""The alert filter (tools/train_filter.py): trained from alerts.jsonl and verdicts through the
command line, it drops most false positives and few true positives on held-out alerts, and
refuses artifacts of another format, version or scikit-learn release."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from job.config import ConfigError, load_config
from tools.train_filter import FEATURES, AlertFilter, alert_features, join, main
from udfs.core.alert_filter import drops, false_positive_probability, metric_of
from udfs.core.alerts import alert_id
from udfs.core.events import format_timestamp

T0 = 1_767_225_600_000
METRICS = ("cpu", "lat_ms", "error_rate", "mem.used", "disk_io")


def _score(decades: float) -> float:
    return round(1.0 - 10.0 ** (-decades), 6)


def synthetic_alerts(n: int, seed: int) -> list[tuple[dict[str, Any], int]]:
    """``(open alert record, 1 if false positive)``, shaped like the detector's records.

    True positives: any metric, clear the threshold by ~1.2 decades on average, large z and
    relative deviation, any hour. False positives: 85 % are the nightly disk_io backup (small
    margin, small z, a few percent of deviation, 01:00-04:00 UTC); 15 % look exactly like
    true positives (label noise no model can separate).
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        is_fp = rng.random() < 0.35
        thr_decades = rng.uniform(3.0, 4.0)
        if is_fp and rng.random() < 0.85:
            metric = "disk_io"
            margin = rng.expovariate(1 / 0.15)
            z = rng.uniform(3.0, 6.0) * rng.choice((1, -1))
            rel = rng.uniform(0.02, 0.12)
            hour = rng.uniform(1.0, 4.0)
        else:
            metric = rng.choice(METRICS)
            margin = rng.expovariate(1 / 1.2)
            z = rng.uniform(4.0, 60.0) * rng.choice((1, 1, -1))
            rel = rng.uniform(0.1, 3.0)
            hour = rng.uniform(0.0, 24.0)
        expected = rng.uniform(10.0, 500.0)
        actual = expected * (1 + math.copysign(rel, z))
        ts = T0 + rng.randrange(0, 30) * 86_400_000 + int(hour * 3_600_000)
        entity = f"srv-{i % 17}"
        severity = 2 if margin >= 2 else 1 if margin >= 1 else 0
        rec = {
            "schema_version": 1,
            "alert_id": alert_id(entity, ts),
            "kind": "open",
            "entity": entity,
            "start_ts": format_timestamp(ts),
            "ts": format_timestamp(ts),
            "ts_ms": ts,
            "severity": ("info", "warning", "critical")[severity],
            "score": _score(thr_decades + margin),
            "threshold": _score(thr_decades),
            "direction": "spike" if z > 0 else "dip",
            "features": [
                {
                    "feature": f"{metric}.1m.zscore",
                    "actual": actual,
                    "expected": expected,
                    "z": round(z, 4),
                }
            ],
            "config_version": "1",
            "suppressed_before": 0,
            "runbook_url": "",
            "dashboard_url": "",
        }
        out.append((rec, 1 if is_fp else 0))
    return out


def _write(tmp_path: Path, labelled: list[tuple[dict[str, Any], int]]) -> tuple[Path, Path]:
    alerts = tmp_path / "alerts.jsonl"
    verdicts = tmp_path / "verdicts.jsonl"
    lines, vlines = [], []
    for rec, fp in labelled:
        lines.append(json.dumps(rec))
        # the job also writes escalate/resolved records of the same episode: ignored
        lines.append(json.dumps({**rec, "kind": "resolved"}))
        v = {"alert_id": rec["alert_id"], "entity": rec["entity"], "reason": "synthetic"}
        vlines.append(json.dumps({**v, "verdict": "false_positive" if fp else "true_positive"}))
    vlines.append('{"alert_id": "nope", "entity": "e", "verdict": "true_positive"}')  # unmatched
    vlines.append("not json")
    alerts.write_text("\n".join(lines) + "\n")
    verdicts.write_text("\n".join(vlines) + "\n")
    return alerts, verdicts


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("filter")
    alerts, verdicts = _write(tmp, synthetic_alerts(600, seed=1))
    model = tmp / "models" / "filter.json"
    assert main(["--alerts", str(alerts), "--verdicts", str(verdicts), "--out", str(model)]) == 0
    return model, json.loads(model.read_text())


def test_features_of_an_alert_are_documented_and_exact() -> None:
    rec = {
        "score": 0.99999,
        "threshold": 0.999,
        "severity": "warning",
        "direction": "dip",
        "ts_ms": T0 + 6 * 3_600_000,  # 06:00 UTC
        "features": [
            {"feature": "mem.used.1h.zscore", "actual": 50.0, "expected": 200.0, "z": -7.0}
        ],
    }
    x = dict(zip(FEATURES, alert_features(rec), strict=True))
    assert x["margin_decades"] == pytest.approx(2.0, abs=1e-9)
    assert (x["severity"], x["direction"]) == (1.0, -1.0)
    assert x["log_abs_z"] == pytest.approx(math.log1p(7.0))
    assert x["log_rel_deviation"] == pytest.approx(math.log1p(0.75))
    assert (x["hour_sin"], x["hour_cos"]) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert sum(x[f"metric_{i}"] for i in range(8)) == 1.0
    assert metric_of("mem.used.1h.zscore") == "mem.used"
    # score 1.0 (rounded) is finite: 1 - score floored at 5e-7
    assert alert_features({**rec, "score": 1.0})[2] == pytest.approx(-math.log10(5e-7) - 3.0)
    # unrounded rarities, when the record has them, give the exact margin
    assert alert_features({**rec, "rarity": 9.25, "threshold_rarity": 3.5})[2] == 5.75


def test_join_uses_open_alerts_with_a_verdict_and_counts_the_rest(tmp_path: Path) -> None:
    labelled = synthetic_alerts(20, seed=2)
    alerts_path, verdicts_path = _write(tmp_path, labelled)
    alerts, labels, counts = join(alerts_path, verdicts_path)
    assert [a["alert_id"] for a in alerts] == [rec["alert_id"] for rec, _ in labelled]
    assert labels == [fp for _, fp in labelled]
    assert counts == {"alert_lines_invalid": 0, "verdicts_invalid": 1, "verdicts_unmatched": 1}


def test_artifact_is_versioned(trained: tuple[Path, dict[str, Any]]) -> None:
    _, artifact = trained
    assert artifact["format"] == "alert-filter"
    assert artifact["version"] == 2
    assert artifact["features"] == list(FEATURES)
    assert artifact["trained_on"] == 600
    assert 0.5 <= artifact["threshold"] < 1.0
    assert artifact["metrics"]["cv_tp_dropped"] <= 0.05


def test_filter_drops_most_false_positives_and_few_true_ones_on_held_out_alerts(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    flt = AlertFilter.load(trained[0])
    held_out = synthetic_alerts(1_000, seed=99)
    drops = [(flt.should_drop(rec), fp) for rec, fp in held_out]
    fps = [d for d, fp in drops if fp]
    tps = [d for d, fp in drops if not fp]
    fp_dropped = sum(fps) / len(fps)
    tp_dropped = sum(tps) / len(tps)
    # 85 % of false positives are separable; the threshold keeps ~95 % of true positives.
    assert fp_dropped >= 0.7, fp_dropped
    assert tp_dropped <= 0.08, tp_dropped
    p = flt.false_positive_probability(held_out[0][0])
    assert 0.0 <= p <= 1.0


def _saved(tmp_path: Path, artifact: dict[str, Any], **change: Any) -> Path:
    path = tmp_path / "changed.json"
    path.write_text(json.dumps({**artifact, **change}))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "river-model"}, "not an alert-filter artifact (format 'river-model')"),
        ({"version": 1}, "alert-filter version 1 is not 2: retrain it"),
        ({"features": ["score"]}, "its features ['score'] are not"),
        ({"coef": [1.0]}, "must be 17 finite numbers each"),
        ({"intercept": "NaN"}, "must be 17 finite numbers each"),
        ({"threshold": None}, "malformed alert-filter numbers"),
    ],
)
def test_load_refuses_a_foreign_artifact(
    tmp_path: Path, trained: tuple[Path, dict[str, Any]], change: dict[str, Any], message: str
) -> None:
    path = _saved(tmp_path, trained[1], **change)
    with pytest.raises(ValueError) as info:
        AlertFilter.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_the_artifact_is_data_loading_a_pickle_is_refused_and_runs_nothing(
    tmp_path: Path,
) -> None:
    import pickle

    path = tmp_path / "filter.pkl"
    path.write_bytes(pickle.dumps({"format": "alert-filter"}))
    with pytest.raises(ValueError, match="not JSON"):
        AlertFilter.load(path)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="not an alert-filter artifact \\(format 'list'\\)"):
        AlertFilter.load(listed)


def test_too_few_labels_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts, verdicts = _write(tmp_path, [(rec, 0) for rec, _ in synthetic_alerts(5, seed=3)])
    code = main(
        ["--alerts", str(alerts), "--verdicts", str(verdicts), "--out", str(tmp_path / "m")]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        "error: need at least 2 false positives and 2 true positives to train, got 0 and 5\n"
    )
    missing = main(
        ["--alerts", str(tmp_path / "no.jsonl"), "--verdicts", str(verdicts), "--out", "x"]
    )
    assert missing == 2
    assert "input file not found" in capsys.readouterr().err


def test_the_job_runs_the_trained_filter_with_scikit_learns_probabilities(
    tmp_path: Path,
) -> None:
    """The artifact's numbers, run by the workers' pure Python, give the probabilities and
    decisions of the scikit-learn model they came from."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    alerts, verdicts = _write(tmp_path, synthetic_alerts(400, seed=4))
    joined, labels, _ = join(alerts, verdicts)
    x = np.asarray([alert_features(a) for a in joined])
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2_000)
    ).fit(x, labels)
    out = tmp_path / "filter.json"
    assert main(["--alerts", str(alerts), "--verdicts", str(verdicts), "--out", str(out)]) == 0
    cfg = load_config(None, [f"detector.filter.artifact={out}"]).detector.filter
    assert cfg.enabled and len(cfg.coef) == len(FEATURES)
    flt = AlertFilter.load(out)
    for rec, _ in synthetic_alerts(300, seed=5):
        expected = float(model.predict_proba(np.asarray([alert_features(rec)]))[0, 1])
        assert false_positive_probability(cfg, rec) == pytest.approx(expected, abs=1e-12)
        assert drops(cfg, rec) == flt.should_drop(rec)


def test_a_missing_artifact_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(None, [f"detector.filter.artifact={tmp_path / 'nope.json'}"])


def test_a_filtered_episode_is_held_back_whole_and_counted_on_the_next_alert() -> None:
    from udfs.core.alert_filter import FilterConfig
    from udfs.core.alerts import AlertConfig, EpisodeTracker

    n = len(FEATURES)
    # Drops every alert whose score is below 0.9999 (coef on the score feature only).
    coef = (-1e4,) + (0.0,) * (n - 1)
    cfg = FilterConfig(True, "", (0.9999,) + (0.0,) * (n - 1), (1.0,) * n, coef, 0.0, 0.5)
    tracker = EpisodeTracker(AlertConfig(quiet_events=0, quiet_period_ms=120_000, cooldown_ms=0), "e")
    weak = {"score": 0.999, "threshold": 0.99, "features": [], "config_version": "1"}
    strong = {**weak, "score": 0.99999}
    out = []
    for minute, (anomalous, detail) in enumerate(
        [(True, weak), (True, {**weak, "score": 0.9991}), (False, {}), (False, {}), (False, {}),
         (True, strong), (False, {}), (False, {})]
    ):
        ts = T0 + minute * 60_000
        records = tracker.on_decision(ts, anomalous, 2 if detail is strong else 0, detail)
        out += tracker.screen(records, lambda rec: drops(cfg, rec))
    kinds = [(r["kind"], r.get("filtered_before")) for r in out]
    # The weak episode (open + resolved) never leaves; the strong one carries the count.
    assert kinds == [("open", 2), ("resolved", None)]
    restored = EpisodeTracker(AlertConfig(), "e")
    restored.restore(tracker.snapshot()[:10])  # a state written before the filter existed
    assert restored.snapshot()[10:12] == ("", 0)
