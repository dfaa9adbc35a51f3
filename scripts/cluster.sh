#!/usr/bin/env bash
# Standalone Flink 2.3 session cluster from the apache-flink wheel installed in the project venv,
# on 127.0.0.1, configured by flink-conf/config.yaml (rendered into <build-dir>/flink-conf).
#
# Usage:
#   scripts/cluster.sh start  [--taskmanagers N] [--rest-port P] [--rpc-port P] [--build-dir DIR] [--timeout S]
#   scripts/cluster.sh stop   [--build-dir DIR]
#   scripts/cluster.sh status [--build-dir DIR]
#   scripts/cluster.sh render [--rest-port P] [--rpc-port P] [--build-dir DIR]   (config only)
#   scripts/cluster.sh submit [--build-dir DIR] -- <arguments to `flink run`>
#   scripts/cluster.sh flink  [--build-dir DIR] -- <any flink CLI command> (list, cancel, stop, ...)
#   scripts/cluster.sh add-taskmanager [--build-dir DIR]   one more TaskManager for a running cluster
#                     (e.g. to replace one that died); prints its pid
#   scripts/cluster.sh latest-checkpoint [--job ID] [--build-dir DIR]   the newest complete retained
#                     checkpoint (of job ID, or of any job) in the checkpoint dir: the path to resume
#                     from after the cluster went down, `submit -- -s "$(... latest-checkpoint)" ...`
#
#   --taskmanagers N  TaskManagers to start, 1 slot each (default 1)
#   --rest-port P     REST/web port (default 8081); --rpc-port P JobManager RPC port (default 6123)
#   --build-dir DIR   where config, logs, pids, checkpoints and savepoints live (default build/):
#                       DIR/flink-conf (FLINK_CONF_DIR)  DIR/flink-log (FLINK_LOG_DIR)
#                       DIR/flink-lib (FLINK_LIB_DIR: the wheel's lib/ + opt/flink-python, see below)
#                       DIR/flink-pid  DIR/flink-checkpoints  DIR/flink-savepoints
#   --metrics-ports R Prometheus reporter ports, a range such as 9249-9269 (default: config.yaml's);
#                     each JobManager/TaskManager takes the first free one (scripts/ops.sh finds them)
#   --state-backend B hashmap (config.yaml's) or rocksdb: RocksDB on local disk with incremental
#                     checkpoints and managed memory 0.4 of the TaskManager (the RocksDB profile)
#   --timeout S       bounded wait for the REST API to report all TaskManagers/slots (default 120)
#
# FLINK_HOME is the `pyflink` package folder of the venv (VENV, default <project>/.venv).
#
# submit runs `flink run -pyexec <venv python> -pyclientexec <venv python> -j <connector jar> ARGS`
# against the running cluster, e.g.
#   scripts/cluster.sh submit -- -d -py job/main.py -pyfs udfs,state -- --my-job-arg x
# Savepoint stop / resume:
#   scripts/cluster.sh flink -- list                                          # find the job id
#   scripts/cluster.sh flink -- stop --savepointPath build/flink-savepoints <jobId>
#   scripts/cluster.sh submit -- -d -s build/flink-savepoints/savepoint-xxxx -py job/main.py ...
#   (a retained checkpoint, build/flink-checkpoints/<jobId>/chk-N, can be passed to -s too:
#    scripts/cluster.sh latest-checkpoint finds the newest)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d'; }

cmd="${1:-}"; [[ $# -gt 0 ]] && shift
TMS=1; REST_PORT=""; RPC_PORT=""; METRICS_PORTS=""; BACKEND=""; BUILD="$ROOT/build"; TIMEOUT=120; PASS=(); JOB=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --taskmanagers) TMS="$2"; shift 2 ;;
    --rest-port) REST_PORT="$2"; shift 2 ;;
    --rpc-port) RPC_PORT="$2"; shift 2 ;;
    --metrics-ports) METRICS_PORTS="$2"; shift 2 ;;
    --state-backend) BACKEND="$2"; shift 2 ;;
    --build-dir) BUILD="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --job) JOB="$2"; shift 2 ;;
    --) shift; PASS=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (arguments for flink go after --)" ;;
  esac
done
[[ "$TMS" =~ ^[1-9][0-9]*$ ]] || die "--taskmanagers must be a positive integer"
[[ -z "$BACKEND" || "$BACKEND" == hashmap || "$BACKEND" == rocksdb ]] \
  || die "--state-backend must be hashmap or rocksdb"

[[ -x "$PY" ]] || die "no venv python at $PY (set VENV or create .venv)"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
FLINK_HOME="$("$PY" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))')" \
  || die "cannot import pyflink with $PY"
SITE_PACKAGES="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[[ -x "$FLINK_HOME/bin/jobmanager.sh" ]] || die "no bin/jobmanager.sh in $FLINK_HOME"

export FLINK_HOME
export FLINK_CONF_DIR="$BUILD/flink-conf"
export FLINK_LOG_DIR="$BUILD/flink-log"
export FLINK_PID_DIR="$BUILD/flink-pid"
export FLINK_IDENT_STRING="anomaly"
# The wheel keeps flink-python (which contains PEMJA, the thread-mode bridge) in opt/, so each job
# loads it in its own user-code classloader. PEMJA loads its native library per classloader; from
# the SECOND Python job on a TaskManager (e.g. a resume from a savepoint) that load fails on Java 17:
#   java.lang.RuntimeException: java.lang.NoSuchFieldException: loadedLibraryNames
#     at pemja.utils.CommonUtils.loadLibrary(CommonUtils.java:117)
# (PEMJA's fallback pokes a JDK 8 field). Fix: run the cluster with a lib dir that also holds
# flink-python, so PEMJA is loaded once per JVM by the parent classloader. The wheel is untouched:
# $BUILD/flink-lib holds symlinks.
export FLINK_LIB_DIR="$BUILD/flink-lib"
# The plugin folder: the wheel's plugins, with the project's loopback Prometheus reporter
# (scripts/build_jvm.py) beside Flink's reporter jar, so that both load in one class loader.
export FLINK_PLUGINS_DIR="$BUILD/flink-plugins"
CONNECTOR_JAR="$(ls "$ROOT"/deps/flink-sql-connector-kafka-*.jar 2>/dev/null | head -n1 || true)"

# Render flink-conf/config.yaml -> $FLINK_CONF_DIR/config.yaml (flat keys, whole-line replacement).
render() {
  mkdir -p "$FLINK_CONF_DIR" "$FLINK_LOG_DIR" "$FLINK_PID_DIR" "$BUILD/flink-checkpoints" "$BUILD/flink-savepoints"
  local f
  rm -rf "$FLINK_LIB_DIR"; mkdir -p "$FLINK_LIB_DIR"
  ln -s "$FLINK_HOME"/lib/*.jar "$FLINK_LIB_DIR"/
  compgen -G "$FLINK_HOME/opt/flink-python-*.jar" >/dev/null || die "no opt/flink-python-*.jar in $FLINK_HOME"
  ln -s "$FLINK_HOME"/opt/flink-python-*.jar "$FLINK_LIB_DIR"/
  rm -rf "$FLINK_PLUGINS_DIR"; mkdir -p "$FLINK_PLUGINS_DIR"
  local plugin reporter
  for plugin in "$FLINK_HOME"/plugins/*/; do
    plugin="$(basename "$plugin")"
    [[ "$plugin" == metrics-prometheus ]] || ln -s "$FLINK_HOME/plugins/$plugin" "$FLINK_PLUGINS_DIR/$plugin"
  done
  mkdir -p "$FLINK_PLUGINS_DIR/metrics-prometheus"
  ln -s "$FLINK_HOME"/plugins/metrics-prometheus/*.jar "$FLINK_PLUGINS_DIR/metrics-prometheus/"
  reporter="$("$PY" -c "import sys; sys.path.insert(0, '$ROOT/scripts'); import build_jvm; print(build_jvm.reporter_jar())")"
  [[ -f "$reporter" ]] || "$PY" "$ROOT/scripts/build_jvm.py" >&2
  if [[ -f "$reporter" ]]; then
    ln -s "$reporter" "$FLINK_PLUGINS_DIR/metrics-prometheus/"
  else
    echo "cluster.sh: no Prometheus reporter jar (a JDK's javac is needed): metrics are not exported" >&2
    reporter=""
  fi
  for f in log4j.properties log4j-cli.properties log4j-console.properties log4j-session.properties \
           logback.xml logback-console.xml logback-session.xml; do
    [[ -f "$FLINK_HOME/conf/$f" ]] && cp -f "$FLINK_HOME/conf/$f" "$FLINK_CONF_DIR/$f"
  done
  local prev_rest="" prev_rpc="" prev_metrics="" prev_backend=""
  if [[ -f "$FLINK_CONF_DIR/config.yaml" ]]; then
    prev_backend="$(sed -n 's/^state\.backend\.type: *//p' "$FLINK_CONF_DIR/config.yaml")"
    prev_metrics="$(sed -n 's/^metrics\.reporter\.prom\.port: *//p' "$FLINK_CONF_DIR/config.yaml")"
    prev_rest="$(sed -n 's/^rest\.port: *//p' "$FLINK_CONF_DIR/config.yaml")"
    prev_rpc="$(sed -n 's/^jobmanager\.rpc\.port: *//p' "$FLINK_CONF_DIR/config.yaml")"
  fi
  "$PY" - "$ROOT/flink-conf/config.yaml" "$FLINK_CONF_DIR/config.yaml" <<PYEOF
import sys, re
src, dst = sys.argv[1], sys.argv[2]
text = open(src).read().replace("@BUILD_DIR@", "$BUILD")
overrides = {
    "python.executable": "$PY",
    "python.client.executable": "$PY",
    "python.pythonpath": "$SITE_PACKAGES",
    "env.pid.dir": "$FLINK_PID_DIR",
    "env.log.dir": "$FLINK_LOG_DIR",
}
rest, rpc = "${REST_PORT:-$prev_rest}", "${RPC_PORT:-$prev_rpc}"
if rest: overrides["rest.port"] = rest
if rpc: overrides["jobmanager.rpc.port"] = rpc
backend = "${BACKEND:-$prev_backend}"
if backend == "rocksdb":
    overrides.update({"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true",
                      "taskmanager.memory.managed.fraction": "0.4"})
metrics = "${METRICS_PORTS:-$prev_metrics}"
if metrics: overrides["metrics.reporter.prom.port"] = metrics
drop = set() if "$reporter" else {"metrics.reporters", "metrics.reporter.prom.factory.class"}
out, seen = [], set()
for line in text.splitlines():
    m = re.match(r"^([A-Za-z0-9_.-]+):\s", line)
    if m and m.group(1) in drop:
        continue
    if m and m.group(1) in overrides:
        k = m.group(1); seen.add(k)
        line = f"{k}: {overrides[k]}"
    out.append(line)
out.append("# ---- rendered by scripts/cluster.sh ----")
out += [f"{k}: {v}" for k, v in overrides.items() if k not in seen]
open(dst, "w").write("\n".join(out) + "\n")
PYEOF
}

conf_get() { sed -n "s/^$1: *//p" "$FLINK_CONF_DIR/config.yaml" | tail -n1; }

# pids listed in a flink-daemon pid file that are still alive
live_pids() {
  local f="$FLINK_PID_DIR/flink-$FLINK_IDENT_STRING-$1.pid" p
  [[ -f "$f" ]] || return 0
  while read -r p; do
    # alive AND still a Flink process of our config dir (guards against pid reuse)
    [[ "$p" =~ ^[0-9]+$ && -r "/proc/$p/cmdline" ]] || continue
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "--configDir $FLINK_CONF_DIR" && echo "$p"
  done < "$f"
  return 0
}

# prints "taskmanagers slots_total slots_available jobs_running" or fails
overview() {
  "$PY" - "$(conf_get rest.port)" <<'PYEOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/overview", timeout=3) as r:
        o = json.load(r)
    print(o["taskmanagers"], o["slots-total"], o["slots-available"], o["jobs-running"])
except Exception:
    sys.exit(1)
PYEOF
}

log_tails() {
  local f
  for f in "$FLINK_LOG_DIR"/*.log "$FLINK_LOG_DIR"/*.out; do
    [[ -s "$f" ]] || continue
    echo "---- last lines of $f ----" >&2
    grep -v '^\s*$' "$f" | tail -n 15 >&2
  done
}

do_stop() {
  local tms jms
  tms="$(live_pids taskexecutor | xargs)"; jms="$(live_pids standalonesession | xargs)"
  if [[ -z "${tms// /}${jms// /}" ]]; then
    echo "cluster.sh: no Flink process of $BUILD running" >&2
    rm -f "$FLINK_PID_DIR"/*.pid
    return 0
  fi
  # What `taskmanager.sh stop-all` / `jobmanager.sh stop-all` do (SIGTERM, SIGKILL after a
  # bounded wait), for the pids of OUR pid dir only, without their config-parsing JVM start.
  local p group t0
  for group in "$tms" "$jms"; do
    [[ -n "${group// /}" ]] || continue
    for p in $group; do kill -TERM "$p" 2>/dev/null || true; done
    t0=$SECONDS
    for p in $group; do
      while kill -0 "$p" 2>/dev/null; do
        if (( SECONDS - t0 >= 15 )); then
          echo "cluster.sh: pid $p did not stop within 15s, sending SIGKILL" >&2
          kill -KILL "$p" 2>/dev/null || true; sleep 0.2; break
        fi
        sleep 0.1
      done
    done
  done
  rm -f "$FLINK_PID_DIR"/*.pid
  echo "cluster.sh: stopped taskmanager pids ${tms:-none}, jobmanager pid ${jms:-none}" >&2
}

do_start() {
  if [[ -n "$(live_pids standalonesession)" ]]; then
    if o="$(overview)"; then
      echo "cluster.sh: already running: $o (taskmanagers slots free running-jobs), REST 127.0.0.1:$(conf_get rest.port)" >&2
      return 0
    fi
    die "a JobManager of $BUILD is running but its REST API does not answer; run: $0 stop --build-dir $BUILD"
  fi
  [[ -n "$(live_pids taskexecutor)" ]] && do_stop
  render
  local port; port="$(conf_get rest.port)"
  if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$port))==0 else 1)"; then
    die "port 127.0.0.1:$port is already in use (another cluster?); pass --rest-port"
  fi
  local t0=$SECONDS
  # JobManager and TaskManagers are launched concurrently (each launcher script spends seconds in
  # config-parsing JVMs; TaskManagers retry until the JobManager is up; flink-daemon.sh takes a
  # flock on the pid dir for its pid-file bookkeeping).
  local i launchers=() failed=0
  "$FLINK_HOME/bin/jobmanager.sh" start >"$FLINK_LOG_DIR/launch-jobmanager.txt" 2>&1 & launchers+=($!)
  for ((i = 1; i <= TMS; i++)); do
    "$FLINK_HOME/bin/taskmanager.sh" start >"$FLINK_LOG_DIR/launch-taskmanager-$i.txt" 2>&1 & launchers+=($!)
  done
  for i in "${launchers[@]}"; do wait "$i" || failed=1; done
  if [[ $failed -ne 0 ]]; then
    cat "$FLINK_LOG_DIR"/launch-*.txt >&2; do_stop; die "a Flink launcher script failed"
  fi
  local o=""
  while :; do
    if o="$(overview)"; then
      read -r tms slots _ _ <<<"$o"
      if [[ "$tms" -ge "$TMS" && "$slots" -ge "$TMS" ]]; then break; fi
    fi
    if [[ -z "$(live_pids standalonesession)" ]]; then
      log_tails; do_stop; die "JobManager exited during start"
    fi
    if (( SECONDS - t0 >= TIMEOUT )); then
      log_tails; do_stop
      die "cluster did not report $TMS TaskManager(s)/slot(s) on http://127.0.0.1:$port/overview within ${TIMEOUT}s (last: ${o:-no answer}); stopped it"
    fi
    sleep 0.5
  done
  echo "cluster.sh: up in $((SECONDS - t0))s: $TMS TaskManager(s), $slots slot(s), REST http://127.0.0.1:$port" >&2
  echo "http://127.0.0.1:$port"
}

do_status() {
  local jm tm o
  jm="$(live_pids standalonesession | xargs)"; tm="$(live_pids taskexecutor | xargs)"
  if [[ -z "$jm$tm" ]]; then echo "not running ($BUILD)"; return 3; fi
  if o="$(overview)"; then
    read -r tms slots free jobs <<<"$o"
    echo "running: jobmanager pid ${jm:-none}, taskmanager pids ${tm:-none}; REST http://127.0.0.1:$(conf_get rest.port): $tms TaskManager(s), $slots slot(s), $free free, $jobs job(s) running"
  else
    echo "processes running (jobmanager ${jm:-none}, taskmanagers ${tm:-none}) but REST does not answer"
    return 1
  fi
}

# One more TaskManager with the running cluster's config, lib dir (PEMJA fix) and pid dir.
do_add_taskmanager() {
  [[ -n "$(live_pids standalonesession)" ]] || die "no JobManager of $BUILD is running (start the cluster first)"
  local before after p
  before=" $(live_pids taskexecutor | xargs) "
  "$FLINK_HOME/bin/taskmanager.sh" start >>"$FLINK_LOG_DIR/launch-taskmanager-added.txt" 2>&1 \
    || { cat "$FLINK_LOG_DIR/launch-taskmanager-added.txt" >&2; die "taskmanager.sh start failed"; }
  # taskmanager.sh returns once the daemon is forked; until the fork has exec'd java its command
  # line lacks --configDir, so look for the new pid for a bounded while (CI saw this race once).
  local deadline=$((SECONDS + 30))
  while (( SECONDS < deadline )); do
    after="$(live_pids taskexecutor | xargs)"
    for p in $after; do
      [[ "$before" == *" $p "* ]] || { echo "cluster.sh: started TaskManager pid $p" >&2; echo "$p"; return 0; }
    done
    sleep 0.2
  done
  die "taskmanager.sh start returned but no new TaskManager process is alive after 30 s (see $FLINK_LOG_DIR)"
}

# The newest complete retained checkpoint: <checkpoint dir>/<jobId>/chk-<n> holding _metadata
# (written last, so a checkpoint cut short by a crash has none); newest by that file's time.
latest_checkpoint() {
  local dir
  dir="$( [[ -f "$FLINK_CONF_DIR/config.yaml" ]] && conf_get execution.checkpointing.dir || true)"
  dir="${dir:-file://$BUILD/flink-checkpoints}"
  [[ "$dir" == file://* ]] || die "latest-checkpoint reads a local checkpoint dir, not $dir"
  dir="${dir#file://}"
  [[ -z "$JOB" || "$JOB" =~ ^[0-9a-f]{32}$ ]] || die "--job must be a 32-hex-digit job id"
  local found
  found="$(ls -1t "$dir"/${JOB:-*}/chk-*/_metadata 2>/dev/null | head -n1 || true)"
  [[ -n "$found" ]] || die "no complete retained checkpoint${JOB:+ of job $JOB} in $dir"
  dirname "$found"
}

flink_cli() {
  [[ -f "$FLINK_CONF_DIR/config.yaml" ]] || render
  "$FLINK_HOME/bin/flink" "$@"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  add-taskmanager) do_add_taskmanager ;;
  latest-checkpoint) latest_checkpoint ;;
  render) render; echo "$FLINK_CONF_DIR/config.yaml" ;;
  submit)
    [[ -n "$CONNECTOR_JAR" ]] || die "no connector jar in deps/ (run scripts/fetch_jars.sh)"
    [[ ${#PASS[@]} -gt 0 ]] || die "nothing to submit: scripts/cluster.sh submit -- -py job.py [...]"
    # `flink run` options must come before the program arguments: our options go first.
    flink_cli run -pyexec "$PY" -pyclientexec "$PY" -j "$CONNECTOR_JAR" "${PASS[@]}" ;;
  flink)
    [[ ${#PASS[@]} -gt 0 ]] || die "usage: scripts/cluster.sh flink -- <flink CLI arguments>"
    flink_cli "${PASS[@]}" ;;
  -h|--help|"") usage; [[ -n "$cmd" ]] ;;
  *) die "unknown command '$cmd' (start|stop|status|render|submit|flink|add-taskmanager|latest-checkpoint)" ;;
esac
