#!/usr/bin/env bash
# Fetch the pinned Prometheus and Alertmanager into deps/ops/ (gitignored).
#
#   deps/ops/bin/prometheus, promtool   Prometheus 2.42.0: Debian's package (bookworm), fetched
#                                       with `apt-get download` (nothing is installed), checked
#                                       against the SHA-256 below, unpacked with `dpkg-deb -x`;
#                                       only its two static binaries are used.
#   deps/ops/bin/alertmanager           Alertmanager 0.28.1, built with `go install` from the Go
#                                       module proxy (modules checked by Go's checksum database).
#                                       Debian's build reads its default notification template
#                                       from /usr/share/prometheus/alertmanager, outside deps/;
#                                       the upstream build embeds it. About a minute, once.
#
# Usage: scripts/fetch_ops.sh          fetch what is missing (idempotent: no network when present)
#        scripts/fetch_ops.sh --check  exit 1 unless both binaries are present
#
# Elsewhere (no apt, no go): put prometheus, promtool and alertmanager binaries of these versions
# (or newer) from https://prometheus.io/download/ into deps/ops/bin/, or set PROMETHEUS and
# ALERTMANAGER to their paths for scripts/ops.sh.
set -euo pipefail

# ---- pinned versions ------------------------------------------------------------------------
PROMETHEUS_DEB="prometheus_2.42.0+ds-5+deb12u1_amd64.deb"
PROMETHEUS_SHA="81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"
ALERTMANAGER_MODULE="github.com/prometheus/alertmanager/cmd/alertmanager@v0.28.1"
# ----------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPS="$ROOT/deps/ops"
BIN="$OPS/bin"
die() { echo "fetch_ops.sh: $*" >&2; exit 1; }

present() { [[ -x "$BIN/prometheus" && -x "$BIN/promtool" && -x "$BIN/alertmanager" ]]; }

case "${1:-}" in
  "") ;;
  --check) present && { echo "fetch_ops.sh: prometheus and alertmanager present"; exit 0; }
           die "deps/ops/bin lacks prometheus or alertmanager (run scripts/fetch_ops.sh)" ;;
  -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --check or nothing)" ;;
esac

if present; then
  echo "fetch_ops.sh: prometheus and alertmanager present (no download)"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: see the header of $0 for other ways"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: see the header of $0 for other ways"
command -v go >/dev/null 2>&1 || die "go not found (Alertmanager is built with it): see the header of $0"
mkdir -p "$OPS/debs" "$BIN"

fetch() {  # <package>=<version> <deb file> <sha256>
  local deb="$OPS/debs/$2"
  if [[ ! -f "$deb" ]] || ! echo "$3  $deb" | sha256sum --check --quiet --strict >/dev/null 2>&1; then
    rm -f "$deb"
    (cd "$OPS/debs" && apt-get download -q "$1" >/dev/null 2>"$OPS/debs/apt.log") \
      || die "apt-get download $1 failed: $(tail -n 3 "$OPS/debs/apt.log")"
    echo "$3  $deb" | sha256sum --check --quiet --strict \
      || die "$2 does not match its pinned SHA-256"
  fi
  rm -rf "$OPS/x" && dpkg-deb -x "$deb" "$OPS/x"
}

if [[ ! -x "$BIN/prometheus" || ! -x "$BIN/promtool" ]]; then
  fetch "prometheus=2.42.0+ds-5+deb12u1" "$PROMETHEUS_DEB" "$PROMETHEUS_SHA"
  cp "$OPS/x/usr/bin/prometheus" "$OPS/x/usr/bin/promtool" "$BIN/"
  rm -rf "$OPS/x"
fi
if [[ ! -x "$BIN/alertmanager" ]]; then
  GOPATH="$OPS/.go" GOBIN="$BIN" GOFLAGS=-modcacherw go install "$ALERTMANAGER_MODULE" \
    >"$OPS/go.log" 2>&1 || die "go install $ALERTMANAGER_MODULE failed: $(tail -n 3 "$OPS/go.log")"
  rm -rf "$OPS/.go"
fi
echo "fetch_ops.sh: $("$BIN/prometheus" --version 2>&1 | head -n1); $("$BIN/alertmanager" --version 2>&1 | head -n1)"
