#!/usr/bin/env bash
# A 3-member etcd cluster on this host, for trying several gateways on one token set (and for
# etcd-store.sh). Members listen on 127.0.0.1 only, keep their data under one directory, and are
# stopped by PID on exit or Ctrl-C.
#
#   bash bench/etcd-cluster.sh            # runs until Ctrl-C; prints the endpoints to configure
#   source bench/etcd-cluster.sh --lib    # defines etcd_cluster_start for other scripts
#
# ETCD_BASE_PORT (default 23790): member i serves clients on BASE+2i and peers on BASE+2i+1.
# ETCD_DIR: where the data goes (default: a new temporary directory, removed on exit).
set -euo pipefail

ETCD_BIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
source "$ETCD_BIN_DIR/lib.sh"

ETCD_BASE_PORT="${ETCD_BASE_PORT:-23790}"
ETCD_ENDPOINTS=""

# etcd_cluster_start DIR: starts three members with data under DIR, waits until all are healthy,
# sets ETCD_ENDPOINTS (comma-separated) and adds their PIDs to STARTED.
etcd_cluster_start() {
  local dir=$1 i client peer initial="" pid
  command -v etcd >/dev/null || die "etcd missing (apt-get install etcd-server)"
  for i in 0 1 2; do
    peer=$(( ETCD_BASE_PORT + 2 * i + 1 ))
    initial+="${initial:+,}m$i=http://127.0.0.1:$peer"
  done
  ETCD_ENDPOINTS=""
  for i in 0 1 2; do
    client=$(( ETCD_BASE_PORT + 2 * i )); peer=$(( client + 1 ))
    etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token tokengate-try \
      >"$dir/m$i.log" 2>&1 &
    pid=$!; STARTED+=("$pid")
    ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}http://127.0.0.1:$client"
  done
  for i in 0 1 2; do
    client=$(( ETCD_BASE_PORT + 2 * i ))
    local tries=0
    until curl -fsS "http://127.0.0.1:$client/health" 2>/dev/null | grep -q '"true"'; do
      tries=$(( tries + 1 )); (( tries < 200 )) || die "etcd member m$i not healthy (see $dir/m$i.log)"
      sleep 0.1
    done
  done
  log "etcd cluster healthy: $ETCD_ENDPOINTS (data and logs in $dir)"
}

if [[ "${1:-}" != "--lib" ]]; then
  dir="${ETCD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tokengate-etcd.XXXXXX")}"
  [[ -n "${ETCD_DIR:-}" ]] || trap 'cleanup; rm -rf "$dir"' EXIT
  mkdir -p "$dir"
  etcd_cluster_start "$dir"
  quoted=$(printf '"%s", ' ${ETCD_ENDPOINTS//,/ }); quoted=${quoted%, }
  cat <<EOT

Configure each gateway with:

[store]
backend = "etcd"
endpoints = [$quoted]

Ctrl-C stops the cluster.
EOT
  wait
fi
