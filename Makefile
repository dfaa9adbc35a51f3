# The two commands a user needs: `make demo` and `make test`. Both create .venv from the
# pinned versions (requirements.lock) when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Numenta Anomaly Benchmark, beside the project (never copied into it).
NAB_DIR ?= $(abspath ../shared/data/nab)
export NAB_DIR

.PHONY: demo test test-fast test-e2e soak lint venv native jars kafka-start kafka-stop kafka-status cluster-start cluster-stop cluster-status ops-bin ops-start ops-stop ops-status clean report tune bench eval

$(STAMP): requirements.lock pyproject.toml
	@command -v java >/dev/null || { echo "error: java (JDK 17) is needed by Flink: install it (apt-get install openjdk-17-jdk-headless) and run again"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { echo "error: Python 3.11 is needed (apache-flink 2.3.0 publishes wheels for it); run with PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

venv: $(STAMP)

## The compiled copy of the window features (mypyc; about 2.5x fewer instructions), for the
## source as it is now; without a C compiler the pure module runs (scripts/build_native.py).
## The jar of the JVM operators (udfs/jvm, javac: line batcher, clock-guarded watermarks,
## the Kafka record key); without a JDK the job runs without them.
native: $(STAMP)
	@$(PY) scripts/build_native.py
	@$(PY) scripts/build_jvm.py

## Run the job on the bundled demo stream on a local MiniCluster; outputs in out/demo/.
demo: native
	$(PY) -m job demo --out out/demo

## The whole suite: unit, MiniCluster and end-to-end (real Kafka, real standalone cluster).
## The pinned JVM artifacts first: the CLI's tests of Kafka errors need the connector jar.
test: native jars
	$(PY) -m pytest -m "not fault_matrix"

## Unit tests only (no JVM).
test-fast: native
	$(PY) -m pytest -m "not minicluster and not e2e"

## HTML report of the demo stream (replay, no JVM): out/demo-report/index.html
report: $(STAMP)
	@test -f out/demo/input.jsonl || $(PY) -c "from job.demo_data import write_demo; write_demo('out/demo/input.jsonl')"
	$(PY) -m job replay --input out/demo/input.jsonl --out out/demo-replay
	$(PY) -m job report --run out/demo-replay --input out/demo/input.jsonl --out out/demo-report

## Target alert rates on the demo stream, scored against its injected incidents
tune: $(STAMP)
	@test -f out/demo/input.jsonl || $(PY) -c "from job.demo_data import write_demo; write_demo('out/demo/input.jsonl')"
	$(PY) -m job tune --input out/demo/input.jsonl --labels demo --json out/tune.json

## Detection quality on NAB, ASD and SKAB -> eval/results/<date>.{json,md} (QUICK=1: a few minutes)
DATA_DIR ?= $(abspath ../shared/data)
export DATA_DIR
eval: native
	$(PY) -m job eval $(if $(QUICK),--quick,)

## Benchmark: job vs plain loop vs naive River baseline -> bench/results/<date>.{json,md} (~3 min; FULL=1: full run)
bench: native
	$(PY) -m job bench $(if $(FULL),,--quick)

## End-to-end tests only (real Kafka broker, standalone Flink clusters, Prometheus, Alertmanager; ~10 min).
test-e2e: native jars
	$(PY) -m pytest -m e2e tests/e2e

## The fault matrix (tests/e2e/test_fault_matrix.py) once per seed of SOAK_SEEDS: other input
## streams and other moments for the faults. Not part of `make test`.
SOAK_SEEDS ?= 2 3 4
soak: native jars
	@for seed in $(SOAK_SEEDS); do \
	  echo "== fault matrix, FAULT_SEED=$$seed"; \
	  FAULT_SEED=$$seed $(PY) -m pytest -x tests/e2e/test_fault_matrix.py || exit 1; \
	done

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

## JVM artifacts (Kafka connector, Kafka broker) from Maven Central, checksummed, into deps/.
jars:
	scripts/fetch_jars.sh

kafka-start: jars
	scripts/kafka.sh start

kafka-stop:
	scripts/kafka.sh stop

cluster-start: native jars
	VENV=$(abspath $(VENV)) scripts/cluster.sh start

cluster-stop:
	VENV=$(abspath $(VENV)) scripts/cluster.sh stop

kafka-status:
	scripts/kafka.sh status

cluster-status:
	VENV=$(abspath $(VENV)) scripts/cluster.sh status

## Prometheus (scraping the cluster's reporters and the alert forwarder) and Alertmanager, on
## 127.0.0.1:9090 and :9093 (scripts/ops.sh; binaries pinned by scripts/fetch_ops.sh).
ops-bin:
	scripts/fetch_ops.sh

ops-start: ops-bin $(STAMP)
	scripts/ops.sh start

ops-stop:
	scripts/ops.sh stop

ops-status:
	scripts/ops.sh status

clean: ops-stop cluster-stop kafka-stop
	rm -rf out build .pytest_cache
