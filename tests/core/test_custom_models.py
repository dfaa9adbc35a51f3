"""Models the user brings (udfs.core.models.external): River estimators by spec and
offline-trained scikit-learn artifacts. A spec is parsed, never evaluated; an artifact's
scores equal scikit-learn's; a River model continues identically after a restore, and a
state of another River version is refused; bad specs and artifacts stop the job at start-up
with one line naming the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from job.cli import main
from job.config import ConfigError, check_river_mode, load_config
from state.codec import decode, encode
from tests.core.test_detector import SMALL, of_kind, stream, uninterrupted_and_resumed
from tools.train_model import fit, fit_one
from udfs.core.config import DetectorConfig
from udfs.core.detector import EntityDetector
from udfs.core.model_config import CustomModel
from udfs.core.models.artifact import FORMAT, parse_artifact
from udfs.core.models.river_spec import build_spec, parse_spec

SVM_SPEC = "preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.02)"


def with_custom(*models: CustomModel, cfg: DetectorConfig = SMALL) -> DetectorConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, custom=models))


@pytest.mark.parametrize(
    "spec",
    [
        "os.system('true')",
        "__import__('os').system('true')",
        "anomaly.OneClassSVM(nu=x)",
        "anomaly.OneClassSVM(nu=open('f').read())",
        "anomaly.OneClassSVM(**{'nu': 1})",
        "anomaly.OneClassSVM() + anomaly.HalfSpaceTrees()",
        "lambda: anomaly.OneClassSVM()",
        "anomaly.OneClassSVM()[0]",
        "datasets.Phishing()",
    ],
)
def test_a_spec_naming_anything_but_river_estimators_and_literals_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["anomaly.Nothing()", "anomaly.base.AnomalyDetector()", "anomaly.OneClassSVM(nuu=1)"])
def test_a_spec_that_parses_but_names_no_estimator_fails_to_build(spec: str) -> None:
    with pytest.raises(ValueError):
        build_spec(spec)


def test_a_spec_builds_the_pipeline_it_names() -> None:
    model = build_spec("river.preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=3, height=4, seed=7)")
    assert [type(step).__name__ for step in model.steps.values()] == ["MinMaxScaler", "HalfSpaceTrees"]
    assert model["HalfSpaceTrees"].n_trees == 3 and model["HalfSpaceTrees"].seed == 7


def test_bad_specs_and_artifacts_stop_the_job_at_start_up_with_one_line_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad_spec:
        load_config(None, ['detector.model.custom=[{name: m, kind: river, spec: "os.system(1)"}]'])
    assert len(bad_spec.value.problems) == 1
    assert bad_spec.value.problems[0].startswith("detector.model.custom[0]")
    assert "spec: 'os.system' is not a River estimator" in bad_spec.value.problems[0]
    with pytest.raises(ConfigError) as no_class:
        load_config(None, ['detector.model.custom=[{name: m, kind: river, spec: "anomaly.Nothing()"}]'])
    assert no_class.value.problems == ["detector.model.custom[0].spec: river.anomaly.Nothing is not a River estimator"]
    not_artifact = tmp_path / "model.json"
    not_artifact.write_text(json.dumps({"coef": [1, 2]}))
    for content in (b"\x00\x01 not json", json.dumps({"coef": [1, 2]}).encode(),
                    json.dumps({"format": FORMAT, "format_version": 1, "kind": "isolation_forest",
                                "features": ["a"], "models": [{"entities": "*", "trees": 3}]}).encode()):
        not_artifact.write_bytes(content)
        with pytest.raises(ConfigError) as bad_artifact:
            load_config(None, [f"detector.model.custom=[{{name: m, kind: artifact, path: '{not_artifact}'}}]"])
        [line] = bad_artifact.value.problems
        assert line.startswith("detector.model.custom[0].path:") and "\n" not in line
    with pytest.raises(ConfigError) as clash:
        load_config(None, [f'detector.model.custom=[{{name: residual, kind: river, spec: "{SVM_SPEC}"}}]'])
    assert "detector.model" in clash.value.problems[0]


def test_a_river_model_needs_process_mode() -> None:
    custom = f'detector.model.custom=[{{name: svm, kind: river, spec: "{SVM_SPEC}"}}]'
    with pytest.raises(ConfigError, match=r"custom\[0\].kind: a River model needs execution.mode=process"):
        check_river_mode(load_config(None, [custom]))
    check_river_mode(load_config(None, [custom, "execution.mode=process"]))


def _data(seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(700, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, 5.0]
    query = np.vstack([train[:40], rng.normal(size=(60, 3)) * [3.0, 30.0, 0.3] + [0.0, 100.0, 5.0]])
    return train, query


@pytest.mark.parametrize("kind", ["isolation_forest", "one_class_svm"])
def test_an_artifact_scores_like_scikit_learn_to_1e_9(kind: str) -> None:
    train, query = _data()
    model, body = fit_one(kind, train, nu=0.05, max_svm_events=500)
    raw = json.dumps({"format": FORMAT, "format_version": 1, "kind": kind, "features": ["a", "b", "c"],
                      "models": [{"entities": "srv-*", "events": len(train), **body}]}).encode()
    scorer = parse_artifact(raw).scorer_for("srv-1")
    assert scorer is not None and parse_artifact(raw).scorer_for("db-1") is None
    if kind == "isolation_forest":
        expected = model.score_samples(query)
    else:
        expected = model.score_samples((query - body["scale_mean"]) / np.asarray(body["scale_std"]))
    got = np.array([scorer.score_samples([float(v) for v in row]) for row in query])
    assert np.abs(got - expected).max() < 1e-9
    assert len(set(np.round(got, 6))) > 20  # not a constant


def test_a_forest_on_a_subset_of_features_per_tree_scores_like_scikit_learn() -> None:
    from sklearn.ensemble import IsolationForest

    from tools.train_model import export_forest

    train, query = _data(2)
    model = IsolationForest(n_estimators=30, max_features=2, random_state=3).fit(train)
    body = export_forest(model, train.shape[1])
    raw = json.dumps({"format": FORMAT, "format_version": 1, "kind": "isolation_forest",
                      "features": ["a", "b", "c"], "models": [{"entities": "*", **body}]}).encode()
    scorer = parse_artifact(raw).scorer_for("x")
    assert scorer is not None
    got = np.array([scorer.score_samples([float(v) for v in row]) for row in query])
    assert np.abs(got - model.score_samples(query)).max() < 1e-9


def test_train_model_writes_an_artifact_per_entity_that_the_replay_scores(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    events = stream(400, entity="srv-1") + stream(400, seed=2, entity="srv-2")
    history.write_text("".join(
        json.dumps({"entity": e.entity, "ts": e.ts_ms, "metrics": e.metrics}) + "\n" for e in events
    ))
    out = tmp_path / "iforest.json"
    assert main(["train-model", "--input", str(history), "--kind", "isolation_forest", "--out", str(out)]) == 0
    artifact = parse_artifact(out.read_bytes())
    assert artifact.features == ("cpu", "mem") and artifact.patterns == ["srv-1", "srv-2"]
    assert artifact.trained["events"] == 800
    live = stream(300, seed=3, entity="srv-1", start=events[-1].ts_ms + 1000, shift={250: {"cpu": 25.0, "mem": 25.0}})
    cfg = with_custom(CustomModel(name="iforest", kind="artifact", path=str(out)))
    det = EntityDetector("srv-1", cfg)
    scores: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for ev in live:
        outs = det.on_event(ev)
        scores += of_kind(outs, "score")
        alerts += of_kind(outs, "alert")
    name = f"iforest@{artifact.version}"
    assert all(name in s["raw"] for s in scores)
    assert max(s["raw"][name] for s in scores) == max(
        s["raw"][name] for s in scores if s["ts_ms"] >= live[250].ts_ms
    )
    opened = [a for a in alerts if a["kind"] == "open"]
    assert opened and all(name in a["models"] for a in opened)


def test_fit_groups_entities_by_pattern() -> None:
    events = stream(100, entity="srv-1") + stream(100, entity="srv-2") + stream(100, entity="db-1")
    art = fit(events, "isolation_forest", ["srv-*", "db-*"], None)
    assert [(m["entities"], m["events"]) for m in art["models"]] == [("srv-*", 200), ("db-*", 100)]


RIVER = CustomModel(name="svm", kind="river", spec=SVM_SPEC)
GAUSS = CustomModel(name="gauss", kind="river", spec="anomaly.GaussianScorer()")
HST_FEATURES = CustomModel(
    name="trees", kind="river", spec="anomaly.HalfSpaceTrees(n_trees=5, height=5, seed=3)", input="features"
)


@pytest.mark.parametrize("model", [RIVER, GAUSS, HST_FEATURES], ids=lambda m: m.name)
@pytest.mark.parametrize("cut", [150, 401])
def test_a_river_model_continues_identically_after_a_restore(model: CustomModel, cut: int) -> None:
    cfg = with_custom(model)
    events = stream(600, shift={400: {"cpu": 30.0}})
    expected, got, first = uninterrupted_and_resumed(events, cut, cfg)
    scores = of_kind(expected, "score")
    assert {model.name in s["raw"] for s in scores[200:]} == {True}
    assert len({round(s["raw"][model.name], 9) for s in scores[200:]}) > 50
    assert got == expected


def test_a_river_state_of_another_river_version_is_refused_with_one_line() -> None:
    cfg = with_custom(RIVER)
    det = EntityDetector("srv-1", cfg)
    for ev in stream(50):
        det.on_event(ev)
    snap = decode(encode(det.snapshot()))
    snap["scoring"]["models"]["svm"]["river"] = "0.19.0"
    with pytest.raises(RuntimeError) as refused:
        EntityDetector.restore("srv-1", cfg, snap)
    message = str(refused.value)
    assert "\n" not in message and "River 0.19.0" in message and "'svm'" in message


def test_a_new_artifact_is_rolled_out_live_and_the_alerts_name_its_version(tmp_path: Path) -> None:
    from udfs.core.events import DeadLetter
    from udfs.core.live import judge_control, resolve

    history = stream(500, seed=4)
    paths = []
    for i, part in enumerate((history[:250], history[250:])):
        path = tmp_path / f"iforest-{i}.json"
        path.write_text(json.dumps(fit(part, "isolation_forest", [], None)))
        paths.append(path)
    versions = [parse_artifact(p.read_bytes()).version for p in paths]
    assert versions[0] != versions[1]
    base = with_custom(CustomModel(name="iforest", kind="artifact", path=str(paths[0])))
    events = stream(900, seed=5, start=history[-1].ts_ms + 1000, shift={300: {"cpu": 30.0}, **{i: {"cpu": 60.0, "mem": 40.0} for i in range(800, 806)}})
    det = EntityDetector("srv-1", base)
    opened: list[dict[str, Any]] = []
    for ev in events[:600]:
        opened += [a for a in of_kind(det.on_event(ev), "alert") if a["kind"] == "open"]
    change = {"config_version": "2", "detector": {"model": {"custom": [
        {"name": "iforest", "kind": "artifact", "path": str(paths[1])}]}}}
    stored, ack = judge_control(base, None, json.dumps(change))
    assert stored is not None and isinstance(ack, dict) and ack["check"] == "config_applied"
    live, problems = resolve(base, json.loads(stored)["overrides"], "2")
    assert live is not None and not problems
    det = EntityDetector.restore("srv-1", live, det.snapshot())  # as the live operator does
    for ev in events[600:]:
        opened += [a for a in of_kind(det.on_event(ev), "alert") if a["kind"] == "open"]
    before = [a for a in opened if a["ts_ms"] < events[600].ts_ms]
    after = [a for a in opened if a["ts_ms"] >= events[600].ts_ms]
    assert before and after
    assert {k for a in before for k in a["models"] if k.startswith("iforest")} == {f"iforest@{versions[0]}"}
    assert {k for a in after for k in a["models"] if k.startswith("iforest")} == {f"iforest@{versions[1]}"}
    assert {a["config_version"] for a in after} == {"2"}

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for custom, problem in (
        ({"name": "iforest", "kind": "artifact", "path": str(bad)}, "detector.model.custom[0].path: not an artifact"),
        ({"name": "svm", "kind": "river", "spec": SVM_SPEC}, "a River model cannot be added or changed live"),
    ):
        rejected, dead = judge_control(base, stored, json.dumps(
            {"config_version": "3", "detector": {"model": {"custom": [custom]}}}))
        assert rejected is None and isinstance(dead, DeadLetter) and problem in dead.detail
    rejected, dead = judge_control(base, stored, '{"config_version": "3", "detector": {"model": {"ensemble": ["window"]}}}')
    assert rejected is None and isinstance(dead, DeadLetter) and "detector.model.ensemble: fixed at start" in dead.detail
