"""Models the user brings, through Flink: a River model by spec (process mode) and an
Isolation Forest artifact (thread mode) give the replay's records at parallelism 1 and 2,
and the same records after a restore from a checkpoint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from job.config import JobConfig, load_config
from job.io import read_records
from job.pipeline import build_pipeline, collect_to_files, create_environment
from tests.configs import FAST
from tests.minicluster.test_flink_job import _replay_outputs, _run_job, _stream
from tests.minicluster.test_recovery import failing_source
from tools.train_model import fit
from udfs.core.events import Event, parse_line

pytestmark = pytest.mark.minicluster

SVM = "preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.02)"


@pytest.fixture(scope="module")
def stream() -> list[str]:
    return _stream(seed=5, entities=3, minutes=300)


@pytest.fixture(scope="module")
def artifact(stream: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Isolation Forest per entity, fitted on the first third of the stream."""
    folder = tmp_path_factory.mktemp("artifact")
    history = folder / "history.jsonl"
    history.write_text("\n".join(stream[: len(stream) // 3]) + "\n")
    cfg = load_config(None, [])
    events = [r for r in read_records(history, cfg.parse) if isinstance(r, Event)]
    path = folder / "iforest.json"
    path.write_text(json.dumps(fit(events, "isolation_forest", [], None)))
    return path


def _config(kind: str, artifact: Path, *extra: str) -> JobConfig:
    if kind == "river":
        custom = [f'detector.model.custom=[{{name: svm, kind: river, spec: "{SVM}"}}]', "execution.mode=process"]
    else:
        custom = [f"detector.model.custom=[{{name: iforest, kind: artifact, path: '{artifact}'}}]"]
    return load_config(None, [*FAST, *custom, "sink.emit_scores=true", *extra])


def _check_custom_model_scored(expected: dict[str, Counter[str]], kind: str) -> None:
    name = "svm" if kind == "river" else "iforest@"
    raws = [json.loads(s)["raw"] for s in expected["scores"]]
    assert sum(any(k.startswith(name) for k in r) for r in raws) > 0.9 * len(raws)
    opened = [json.loads(a) for a in expected["alerts"] if '"kind": "open"' in a]
    assert opened and all(any(k.startswith(name) for k in a["models"]) for a in opened)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["river", "artifact"])
def test_a_custom_model_gives_the_replays_records(
    stream: list[str], artifact: Path, tmp_path: Path, kind: str, parallelism: int
) -> None:
    cfg = _config(kind, artifact, f"execution.parallelism={parallelism}")
    expected = _replay_outputs(stream, cfg)
    _check_custom_model_scored(expected, kind)
    got = _run_job(stream, cfg, tmp_path)
    for name in ("alerts", "late", "dead_letter", "scores", "drift"):
        assert got[name] == expected[name], f"{name} differ between Flink ({kind}, p={parallelism}) and replay"


@pytest.mark.parametrize("kind", ["artifact", "river"])
def test_a_custom_model_gives_the_replays_records_after_a_restore_from_a_checkpoint(
    stream: list[str], artifact: Path, tmp_path: Path, kind: str
) -> None:
    """The River model runs in process mode, where a restored job loses the events still
    buffered (within the out-of-orderness bound) when the input ends, custom models or
    not: its comparison leaves out the records of the input's last bound."""
    cfg = _config(kind, artifact, "execution.checkpoint_interval_ms=300", "execution.restart_attempts=2")
    expected = _replay_outputs(stream, cfg)
    _check_custom_model_scored(expected, kind)
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(stream) + "\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    env = create_environment(cfg)
    source = failing_source(env, src, markers, int(len(stream) * 0.5), 0.002)
    collect_to_files(build_pipeline(env, cfg, source), tmp_path / "out", "custom-recovery")
    assert (markers / "failed").exists(), "the failure was not injected"
    attempts = sorted(markers.glob("attempt-*"))
    assert attempts and int(attempts[-1].read_text()) < len(stream), "the restart re-read the input: no checkpoint"
    last = max(e.ts_ms for e in (parse_line(line, cfg.parse) for line in stream) if isinstance(e, Event))
    cut = last - cfg.detector.lateness.max_out_of_orderness_ms if kind == "river" else None
    for name in ("alerts", "late", "dead_letter", "scores", "drift"):
        got = Counter((tmp_path / "out" / f"{name}.jsonl").read_text().splitlines())
        assert _before(got, cut) == _before(expected[name], cut), f"{name} differ after the restore"


def _before(records: Counter[str], cut: int | None) -> Counter[str]:
    if cut is None:
        return records
    return Counter({r: n for r, n in records.items() if json.loads(r).get("ts_ms", 0) < cut})
