#!/usr/bin/env bash
# Single-node Apache Kafka (4.x, KRaft: combined broker + controller, no ZooKeeper) on 127.0.0.1,
# run with plain `java -cp 'deps/kafka/*' kafka.Kafka server.properties` from the jars that
# scripts/fetch_jars.sh pinned.
#
# Usage: scripts/kafka.sh start|stop|status [--port N] [--controller-port N] [--dir DIR] [--timeout S]
#   --port N             client (PLAINTEXT) port, default 9092 (tests: pass a free port)
#   --controller-port N  KRaft controller port, default: a free port chosen at start
#   --dir DIR            state folder (config, data, logs, pid), default build/kafka
#   --timeout S          bounded wait for start (default 90 s) and stop (default 30 s)
#
# start: formats the storage on first use (random cluster id), starts the broker in the
#   background, writes DIR/kafka.pid, and returns once the port accepts connections AND the broker
#   answers a Kafka MetadataRequest listing itself with an elected controller. Prints the bootstrap
#   address (127.0.0.1:PORT) on stdout. On failure: a one-line reason, the log tail, exit 1.
#   Starting an already-running broker of the same DIR is a no-op.
# stop: SIGTERM (controlled shutdown), bounded wait, SIGKILL if still alive, removes the pid file.
# status: exit 0 and 'running ...' if the broker answers; exit 3 if it is not running.
# Data survives stop/start; delete DIR for a fresh cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY="$ROOT/.venv/bin/python"

die() { echo "kafka.sh: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0"; }

cmd="${1:-}"; [[ $# -gt 0 ]] && shift
PORT=""; CPORT=""; DIR="$ROOT/build/kafka"; TIMEOUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --controller-port) CPORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/kafka.pid"
OUT="$DIR/logs/kafka.out"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# pid of our broker if running (pid file + a live java process running kafka.Kafka with our config)
running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "kafka.Kafka $DIR/server.properties" || return 1
  echo "$pid"
}

# Send a real Kafka MetadataRequest (v4, all topics) and require our broker in the answer and an
# elected controller. Plain sockets: no client library needed. Exit 0 when healthy.
probe_metadata() {
  "$PY" - "$1" <<'PYEOF'
import socket, struct, sys
port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.settimeout(3)
    cid = b"kafka.sh-probe"
    # header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    body = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid
    body += struct.pack(">i", -1) + b"\x01"          # topics=null (all), allow_auto_topic_creation
    s.sendall(struct.pack(">i", len(body)) + body)
    def recvn(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError("connection closed")
            b += c
        return b
    (size,) = struct.unpack(">i", recvn(4))
    r = recvn(size)
    corr, throttle, nbrokers = struct.unpack(">iii", r[:12])
    off = 12; ports = []
    for _ in range(nbrokers):
        (node,) = struct.unpack(">i", r[off:off+4]); off += 4
        (hl,) = struct.unpack(">h", r[off:off+2]); off += 2 + hl
        (p,) = struct.unpack(">i", r[off:off+4]); off += 4; ports.append(p)
        (rl,) = struct.unpack(">h", r[off:off+2]); off += 2 + max(rl, 0)
    (cl,) = struct.unpack(">h", r[off:off+2]); off += 2 + max(cl, 0)
    (controller,) = struct.unpack(">i", r[off:off+4])
    ok = corr == 7 and port in ports and controller >= 0
    sys.exit(0 if ok else 2)
except Exception:
    sys.exit(1)
PYEOF
}

tail_log() {
  echo "---- last lines of $OUT ----" >&2
  tail -n "${1:-40}" "$OUT" >&2 2>/dev/null || echo "(no log)" >&2
}

do_start() {
  local jars="$ROOT/deps/kafka"
  compgen -G "$jars/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in deps/kafka (run scripts/fetch_jars.sh)"
  command -v java >/dev/null 2>&1 || die "java not found on PATH"

  local pid
  if pid="$(running_pid)"; then
    local p; p="$(cat "$DIR/kafka.port")"
    if [[ -n "$PORT" && "$PORT" != "$p" ]]; then
      die "already running from $DIR on port $p (pid $pid); stop it first"
    fi
    echo "kafka.sh: already running (pid $pid)" >&2
    echo "127.0.0.1:$p"
    return 0
  fi

  PORT="${PORT:-9092}"
  CPORT="${CPORT:-$(free_port)}"
  [[ "$CPORT" != "$PORT" ]] || die "--controller-port must differ from --port"
  mkdir -p "$DIR/data" "$DIR/logs"

  cat > "$DIR/server.properties" <<EOF
# generated by scripts/kafka.sh: single node, KRaft combined mode, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
# internal topics of a single node: RF 1, min ISR 1, few partitions (faster first use)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Flink's KafkaSink (EXACTLY_ONCE) defaults to transaction.timeout.ms = 1 h; the broker default
# cap is 15 min and would reject it.
transaction.max.timeout.ms=3600000
# Kept by size, not age: the demo and the tests replay dated events, and the job's Kafka sink
# stamps each output record with its event time, so an age limit would delete those outputs at
# the broker's next retention check (every 5 min), minutes after they were written.
log.retention.ms=-1
log.retention.bytes=1073741824
EOF

  cat > "$DIR/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF

  local cp="$jars/*"
  local jvm=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
             "-Dlog4j2.configurationFile=$DIR/log4j2.properties" "-Dkafka.logs.dir=$DIR/logs")

  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$("$PY" -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s); break')"
    if ! java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$DIR/server.properties" > "$DIR/logs/format.out" 2>&1; then
      echo "---- $DIR/logs/format.out ----" >&2; tail -n 30 "$DIR/logs/format.out" >&2
      die "storage format failed"
    fi
    echo "$cluster_id" > "$DIR/cluster.id"
  fi

  echo "$PORT" > "$DIR/kafka.port"
  echo "$CPORT" > "$DIR/controller.port"
  echo "==== start $(date -Is) port=$PORT controller=$CPORT ====" >> "$OUT"
  nohup java "${jvm[@]}" -cp "$cp" kafka.Kafka "$DIR/server.properties" \
    </dev/null >>"$OUT" 2>&1 &
  pid=$!
  echo "$pid" > "$PIDFILE"

  local t0=$SECONDS limit="${TIMEOUT:-90}"
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"; tail_log
      die "broker process $pid exited during start (see $OUT)"
    fi
    if probe_metadata "$PORT"; then break; fi
    if (( SECONDS - t0 >= limit )); then
      tail_log
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      die "broker on 127.0.0.1:$PORT did not answer metadata within ${limit}s (stopped it)"
    fi
    sleep 0.3
  done
  echo "kafka.sh: broker up on 127.0.0.1:$PORT (pid $pid, $((SECONDS - t0))s)" >&2
  echo "127.0.0.1:$PORT"
}

do_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    echo "kafka.sh: not running ($DIR)" >&2
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS limit="${TIMEOUT:-30}"
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - t0 >= limit )); then
      echo "kafka.sh: broker $pid still alive after ${limit}s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  echo "kafka.sh: stopped (pid $pid, $((SECONDS - t0))s)" >&2
}

do_status() {
  local pid p
  if ! pid="$(running_pid)"; then echo "not running ($DIR)"; return 3; fi
  p="${PORT:-$(cat "$DIR/kafka.port" 2>/dev/null || echo 9092)}"
  if probe_metadata "$p"; then
    echo "running pid=$pid bootstrap=127.0.0.1:$p dir=$DIR"
  else
    echo "process running (pid $pid) but not answering metadata on 127.0.0.1:$p"; return 1
  fi
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|"") usage; [[ -n "$cmd" ]] ;;
  *) die "unknown command '$cmd' (start|stop|status)" ;;
esac
