#!/usr/bin/env bash
# Prometheus and Alertmanager on 127.0.0.1 beside the cluster and the broker: see scripts/ops.py
# (`scripts/ops.sh --help`). Binaries from scripts/fetch_ops.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
exec "$PY" "$ROOT/scripts/ops.py" "$@"
