#!/usr/bin/env bash
# Fetch the pinned JVM artifacts the project needs into deps/ (gitignored), through `mvn`
# (Maven Central only), and verify every file against the SHA-256 recorded in
# scripts/jars.sha256.
#
#   deps/flink-sql-connector-kafka-<ver>.jar   Flink Kafka connector (fat/SQL jar, kafka-clients shaded)
#   deps/kafka/*.jar                           Kafka broker (kafka_2.13) + its full runtime classpath
#                                              + log4j-slf4j-impl (slf4j 1.7 -> log4j2 binding)
#
# Usage:
#   scripts/fetch_jars.sh            fetch what is missing/wrong, verify everything (idempotent: no
#                                    network and no mvn call when all files are present and match)
#   scripts/fetch_jars.sh --check    verify only; exit 1 if anything is missing or wrong
#   scripts/fetch_jars.sh --record   (maintainers, after bumping a version below) fetch and rewrite
#                                    scripts/jars.sha256 from what Maven delivered (mvn -C checks the
#                                    repository's own checksums while downloading)
set -euo pipefail

# ---- pinned versions -------------------------------------------------------------------------
FLINK_KAFKA_CONNECTOR_VERSION="5.0.0-2.2"   # newest served; built for Flink 2.2, tested with 2.3
KAFKA_VERSION="4.2.1"                       # broker; the connector shades kafka-clients 4.2.0
LOG4J_VERSION="2.25.4"                      # = log4j-core that kafka-server 4.2.1 depends on
# ----------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/deps"
SUMS="$ROOT/scripts/jars.sha256"
CONNECTOR_JAR="flink-sql-connector-kafka-${FLINK_KAFKA_CONNECTOR_VERSION}.jar"
WORK="$DEPS/.mvn-work"
LOG="$WORK/mvn.log"

die() { echo "fetch_jars.sh: $*" >&2; exit 1; }

mode="fetch"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  --record) mode="record" ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --check, --record or nothing)" ;;
esac

# verify: every line of jars.sha256 exists under deps/ with that hash, and deps/kafka holds no
# jar that is not listed (a stray jar on a 'deps/kafka/*' classpath could shadow a pinned one).
verify() {
  local quiet="${1:-}"
  [[ -f "$SUMS" ]] || { [[ -n "$quiet" ]] || echo "missing $SUMS"; return 1; }
  local ok=0
  (cd "$DEPS" 2>/dev/null && sha256sum --check --quiet --strict "$SUMS" >/dev/null 2>&1) || ok=1
  if [[ $ok -ne 0 && -z "$quiet" ]]; then
    (cd "$DEPS" 2>/dev/null && sha256sum --check --quiet "$SUMS" 2>&1 | head -5) || true
  fi
  if [[ -d "$DEPS/kafka" ]]; then
    local f
    for f in "$DEPS"/kafka/*.jar; do
      [[ -e "$f" ]] || continue
      if ! awk -v n="kafka/$(basename "$f")" '$2 == n {found=1} END {exit !found}' "$SUMS"; then
        [[ -n "$quiet" ]] || echo "unlisted jar: deps/kafka/$(basename "$f")"
        ok=1
      fi
    done
  else
    ok=1
  fi
  return $ok
}

if [[ "$mode" == "check" ]]; then
  if verify; then echo "fetch_jars.sh: all pinned jars present and verified"; exit 0; fi
  die "deps/ does not match scripts/jars.sha256 (run scripts/fetch_jars.sh)"
fi

if [[ "$mode" == "fetch" ]] && verify quiet; then
  echo "fetch_jars.sh: all pinned jars present and verified (no download)"
  exit 0
fi

command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH"
mkdir -p "$WORK"

cat > "$WORK/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.fetch</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
EOF

run_mvn() {
  # -C: fail if the repository checksum of a download does not match
  if ! mvn -B -C -f "$WORK/pom.xml" "$@" >>"$LOG" 2>&1; then
    local err
    err="$(grep -m1 '^\[ERROR\]' "$LOG" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300 || true)"
    die "mvn failed (${err:-see $LOG}); full log: $LOG"
  fi
}

: > "$LOG"
STAGE="$WORK/stage"
rm -rf "$STAGE"
mkdir -p "$STAGE/kafka"

echo "fetch_jars.sh: fetching ${CONNECTOR_JAR} and kafka_2.13:${KAFKA_VERSION} runtime classpath with mvn ..."
run_mvn org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
  -Dartifact="org.apache.flink:flink-sql-connector-kafka:${FLINK_KAFKA_CONNECTOR_VERSION}:jar" \
  -DoutputDirectory="$STAGE"
run_mvn org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$STAGE/kafka"

[[ -f "$STAGE/$CONNECTOR_JAR" ]] || die "mvn did not produce $CONNECTOR_JAR"
[[ -f "$STAGE/kafka/kafka_2.13-${KAFKA_VERSION}.jar" ]] || die "mvn did not produce kafka_2.13-${KAFKA_VERSION}.jar"

# install: replace deps/kafka as a whole (no stale jars from another version), keep other deps/ files
mkdir -p "$DEPS"
rm -rf "$DEPS/kafka"
mv "$STAGE/kafka" "$DEPS/kafka"
mv -f "$STAGE/$CONNECTOR_JAR" "$DEPS/$CONNECTOR_JAR"
rm -rf "$STAGE"

if [[ "$mode" == "record" ]]; then
  {
    echo "# SHA-256 of the pinned JVM artifacts, paths relative to deps/. Written by"
    echo "# 'scripts/fetch_jars.sh --record' (connector ${FLINK_KAFKA_CONNECTOR_VERSION}, kafka ${KAFKA_VERSION}, log4j ${LOG4J_VERSION})."
    (cd "$DEPS" && sha256sum "$CONNECTOR_JAR" && sha256sum kafka/*.jar)
  } > "$SUMS"
  echo "fetch_jars.sh: recorded $(grep -vc '^#' "$SUMS") checksums in scripts/jars.sha256"
fi

if verify; then
  echo "fetch_jars.sh: all pinned jars present and verified"
else
  die "checksum verification FAILED against scripts/jars.sha256 (see above); refusing to use deps/"
fi
