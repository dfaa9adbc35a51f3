"""Typed configuration (job.config) and the CLI's handling of it: defaults, ``--set`` of
nested keys (values read as YAML), every problem reported at once naming its key, and
clean command-line errors without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from job.config import ConfigError, JobConfig, load_config
from tests import ROOT
from udfs.core.features import WindowSpec

PYTHON = ROOT / ".venv" / "bin" / "python"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(PYTHON) if PYTHON.exists() else sys.executable
    return subprocess.run(
        [exe, "-m", "job", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def problems_of(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    return info.value.problems


def test_defaults_load_without_a_file() -> None:
    cfg = load_config()
    assert cfg == JobConfig()
    assert cfg.detector.lateness.max_out_of_orderness_ms == 5_000
    assert cfg.detector.model.ensemble == ("extremes", "residual")


def test_default_profile_is_the_documented_defaults() -> None:
    assert load_config(profile="default") == JobConfig()


def test_set_overrides_nested_keys_with_yaml_values() -> None:
    cfg = load_config(
        overrides=[
            "detector.threshold.target_alert_rate=0.0005",
            "detector.model.learn_anomalies=true",
            "detector.model.combine=mean",
            "detector.lateness.max_out_of_orderness_ms=2000",
            "sink.dir=out/x",
        ]
    )
    assert cfg.detector.threshold.target_alert_rate == 0.0005
    assert cfg.detector.model.learn_anomalies is True
    assert cfg.detector.model.combine == "mean"
    assert cfg.detector.lateness.max_out_of_orderness_ms == 2000
    assert cfg.sink.dir == "out/x"
    # Untouched siblings keep their defaults.
    assert cfg.detector.threshold.min_events == 2_000
    assert cfg.detector.model.hst_trees == 10


def test_set_accepts_tuples_in_yaml_flow_syntax() -> None:
    cfg = load_config(
        overrides=[
            "detector.features.windows=[{name: 10s, length_ms: 10000, buckets: 5},"
            " {name: 1m, length_ms: 60000, buckets: 6}]",
            "detector.features.ratio_pairs=[[10s, 1m]]",
            "detector.features.robust_windows=[1m]",
        ]
    )
    feats = cfg.detector.features
    assert feats.windows == (WindowSpec("10s", 10_000, 5), WindowSpec("1m", 60_000, 6))
    assert feats.ratio_pairs == (("10s", "1m"),)
    assert feats.robust_windows == ("1m",)


def test_later_set_wins_over_earlier_and_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("detector:\n  model:\n    hst_trees: 4\n    seed: 9\n")
    cfg = load_config(str(f), ["detector.model.hst_trees=5", "detector.model.hst_trees=6"])
    assert (cfg.detector.model.hst_trees, cfg.detector.model.seed) == (6, 9)


def test_unknown_keys_wrong_types_and_semantic_errors_are_all_reported_at_once() -> None:
    problems = problems_of(
        [
            "bogus=1",  # unknown, top level
            "detector.model.foo=1",  # unknown, depth 3
            "detector.features.windowz=[]",  # unknown, depth 3, other section
            "execution.parallelism=many",  # wrong type
            "detector.alerts.cooldown_ms=soon",  # wrong type, depth 3
            "detector.threshold.target_alert_rate=2",  # semantic
            "source.type=ftp",  # semantic
            "detector.lateness.idle_ttl_ms=0",  # semantic
        ]
    )
    text = "\n".join(problems)
    for key in (
        "bogus",
        "detector.model.foo",
        "detector.features.windowz",
        "execution.parallelism",
        "detector.alerts.cooldown_ms",
    ):
        assert any(p.startswith(key + ":") for p in problems), (key, text)
    # Semantic errors name the section and the field.
    assert any(p.startswith("detector.threshold:") and "target_alert_rate" in p for p in problems)
    assert any(p.startswith("source:") and "type" in p and "ftp" in p for p in problems)
    assert any(p.startswith("detector.lateness:") and "idle_ttl_ms" in p for p in problems)
    assert len(problems) == 8, text


def test_config_error_message_lists_every_problem_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["a=1", "b=2"])
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert [ln.strip().split(":")[0] for ln in lines[1:]] == ["a", "b"]


def test_type_error_and_semantic_error_in_the_same_section_are_both_reported() -> None:
    problems = problems_of(["detector.model.hst_trees=x", "detector.model.hst_height=50"])
    text = "\n".join(problems)
    assert "hst_trees" in text and "hst_height" in text


def test_a_value_where_a_section_is_expected_is_reported() -> None:
    problems = problems_of(["detector=1"])
    assert problems == ["detector: expected a mapping, got 1"]


def test_set_without_equals_is_reported() -> None:
    problems = problems_of(["detector.model.seed"])
    assert len(problems) == 1 and "detector.model.seed" in problems[0]


def test_missing_profile_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(profile="does-not-exist")
    assert info.value.problems == ["profile 'does-not-exist' not found (known: default)"]


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(str(tmp_path / "nope.yaml"))


# -- command line --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("--help",), ("run", "--help")], ids=["job", "run"])
def test_help_exits_zero_and_documents_set(args: tuple[str, ...]) -> None:
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "--set" in res.stdout
    assert "KEY=VALUE" in res.stdout


def test_run_with_unknown_key_exits_2_naming_it_without_traceback() -> None:
    res = cli("run", "--set", "foo=1")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "foo: unknown key" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 4
    assert res.stdout == ""


def test_run_with_missing_profile_exits_2_without_traceback() -> None:
    res = cli("run", "--profile", "does-not-exist")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "does-not-exist" in res.stderr


def test_a_config_stamp_rebuilds_the_configuration_it_was_taken_of() -> None:
    from udfs.core.config import DetectorConfig, config_from_stamp, config_stamp

    default = DetectorConfig()
    assert config_stamp(default)[1] == "{}"
    assert config_from_stamp(config_stamp(default)) == default
    changed = load_config(
        None,
        [
            "detector.threshold.target_alert_rate=0.01",
            "detector.features.windows=[{name: 1m, length_ms: 60000, buckets: 6}]",
            "detector.features.ratio_pairs=[]",
            "detector.maintenance.windows=[{entities: 'db-*', start: '2026-01-01T00:00:00Z', end: '2026-01-01T01:00:00Z'}]",
        ],
    ).detector
    stamp = config_stamp(changed)
    assert config_from_stamp(stamp) == changed != default
    # Written against other defaults (an upgrade changed one): not rebuilt.
    assert config_from_stamp(("0" * 16, stamp[1])) is None
