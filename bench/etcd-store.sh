#!/usr/bin/env bash
# The etcd store's figures, on a 3-member etcd cluster on this host (bench/etcd-cluster.sh):
#  1. create→visible: a token created on gateway A, until gateway B accepts it (p50/p99/max over
#     CREATES creates, one at a time, on an otherwise idle cluster);
#  2. start-up with TOKENS tokens in etcd: a journal of that many imported tokens is copied with
#     `tokens migrate --to etcd`, then a gateway starts on that prefix; the time its log gives
#     for reading the set, and the wall time until it listens.
#
#   bash bench/etcd-store.sh [BIN]      # BIN: a release build with --features etcd
#
# CREATES (default 300), TOKENS (default 1000000). 127.0.0.1 only; every process is started here
# and stopped by PID on exit.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"
# shellcheck source=bench/etcd-cluster.sh
source "$BENCH/etcd-cluster.sh" --lib
CREATES="${CREATES:-300}"
TOKENS="${TOKENS:-1000000}"
PORT_A=18281 PORT_B=18282 PORT_C=18283
for t in python3 curl etcd; do command -v "$t" >/dev/null || die "$t missing"; done

BIN="${1:-}"
if [[ -z "$BIN" ]]; then
  (cd "$PROJECT" && cargo build --release --features etcd --quiet) || die "build failed"
  BIN="${CARGO_TARGET_DIR:-$PROJECT/target}/release/tokengate"
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-etcd-bench.XXXXXX")"
trap 'cleanup; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/etcd"
etcd_cluster_start "$WORK/etcd"
endpoints=$(printf '"%s", ' ${ETCD_ENDPOINTS//,/ }); endpoints=${endpoints%, }

config() {  # name port prefix -> config path; the upstream is a closed port: any answer but 401
            # means the token was accepted
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1.toml" <<EOT
[server]
listen = "127.0.0.1:$2"
data_dir = "$WORK/$1"
[upstream]
url = "http://127.0.0.1:9"
[admin]
listen = ""
[log]
level = "info"
[store]
backend = "etcd"
endpoints = [$endpoints]
prefix = "$3"
EOT
  echo "$WORK/$1.toml"
}

start() {  # name port prefix
  ELASTIC_PASSWORD=bench-etcd-pw "$BIN" --config "$(config "$1" "$2" "$3")" >"$WORK/$1.log" 2>&1 &
  STARTED+=("$!")
  wait_port "$2" 120 || die "gateway $1 did not start (see $WORK/$1.log)"
}

log "1. create on A, accepted on B ($CREATES creates)"
start a "$PORT_A" /bench-latency/
start b "$PORT_B" /bench-latency/
python3 - "$PORT_A" "$PORT_B" "$CREATES" <<'PY'
import base64, http.client, json, sys, time
port_a, port_b, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
auth = "Basic " + base64.b64encode(b"elastic:bench-etcd-pw").decode()
a = http.client.HTTPConnection("127.0.0.1", port_a)
b = http.client.HTTPConnection("127.0.0.1", port_b)
lat = []
for i in range(n):
    start = time.perf_counter()
    a.request("POST", f"/_security/service/elastic/fleet-server/credential/token/lat-{i}",
              headers={"Authorization": auth})
    r = a.getresponse(); body = r.read()
    if r.status != 200:
        sys.exit(f"create {i}: {r.status} {body!r}")
    value = json.loads(body)["token"]["value"]
    while True:
        b.request("GET", "/", headers={"Authorization": "Bearer " + value})
        r = b.getresponse(); r.read()
        if r.status != 401:
            break
        if time.perf_counter() - start > 5:
            sys.exit(f"token {i} not accepted on B within 5 s")
    lat.append((time.perf_counter() - start) * 1000)
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"create->visible on another gateway: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, "
      f"max {lat[-1]:.1f} ms over {n} creates")
PY

log "2. start-up with $TOKENS tokens in etcd"
python3 - "$WORK/tokens.txt" "$TOKENS" <<'PY'
import base64, os, sys
with open(sys.argv[1], "w") as out:
    for i in range(int(sys.argv[2])):
        raw = b"\x00\x01\x00\x01" + f"elastic/fleet-server/m{i}:".encode() + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=")
        out.write(base64.b64encode(raw).decode().rstrip("=") + "\n")
PY
mkdir -p "$WORK/journal"
t0=$(date +%s.%N)
ELASTIC_PASSWORD=bench-etcd-pw "$BIN" --data-dir "$WORK/journal" tokens import "$WORK/tokens.txt" >/dev/null
t1=$(date +%s.%N)
TOKENGATE_STORE__ENDPOINTS="$ETCD_ENDPOINTS" TOKENGATE_STORE__PREFIX=/bench-1m/ \
  "$BIN" --data-dir "$WORK/journal" tokens migrate --to etcd
t2=$(date +%s.%N)
log "import into the journal: $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}") s; migrate to etcd: $(awk "BEGIN {printf \"%.2f\", $t2 - $t1}") s"
# Twice: right after the copy etcd is still busy with it (snapshots, compaction of its log); the
# second start is a gateway restarted on a settled cluster.
for round in first second; do
  t0=$(date +%s.%N)
  start c "$PORT_C" /bench-1m/
  t1=$(date +%s.%N)
  read_ms=$(grep 'token store read from etcd' "$WORK/c.log" | tail -1 | grep -o 'took_ms[^0-9]*[0-9]*' | grep -o '[0-9]*$')
  tokens=$(grep 'token store read from etcd' "$WORK/c.log" | tail -1 | grep -o ' tokens[^0-9]*[0-9]*' | grep -o '[0-9]*$')
  rss=$(awk '/VmRSS/ {print $2 / 1024 " MiB"}' "/proc/${STARTED[-1]}/status")
  echo "start-up ($round) with $tokens tokens in etcd: read in ${read_ms} ms (log), listening after $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}") s; RSS $rss"
  stop_pid "${STARTED[-1]}"; unset 'STARTED[-1]'
done
