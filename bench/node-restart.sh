#!/usr/bin/env bash
# One node of three restarted under wrk load: what the clients see, and how long the gateway
# takes to eject the node and to use it again.
#
#   bash bench/node-restart.sh                 # this tree's release build
#   TOKENGATE_BIN=/path/to/tokengate bash bench/node-restart.sh
#
# Three nginx nodes on loopback stand in for the cluster; the gateway forwards to all three.
# wrk runs DURATION seconds (default 30) of GETs with 32 connections; KILL_AT seconds in
# (default 10) the second node is killed (SIGKILL: connections die mid-request, as a crash),
# and RESTART_AT seconds in (default 15) it is started again. Reported: requests, non-2xx and
# socket errors, req/s; time from the kill to the gateway's ejection line and from the
# restart to its "back in rotation" line; requests each node served. KILL=0 runs the same
# load without the restart, for the throughput baseline. 127.0.0.1 only; every process is
# started here and stopped by PID. KEEP=1 keeps the logs.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

DURATION="${DURATION:-30}"
KILL_AT="${KILL_AT:-10}"
RESTART_AT="${RESTART_AT:-15}"
KILL="${KILL:-1}"
CONNECTIONS="${CONNECTIONS:-32}"
GW_PORT="${GW_PORT:-18280}"
ADMIN_PORT="${ADMIN_PORT:-18281}"
NODE_PORTS=(19381 19382 19383)

for t in wrk nginx python3 curl; do
  command -v "$t" >/dev/null || die "$t missing (bash bench/install-deps.sh)"
done
if [[ -n "${TOKENGATE_BIN:-}" ]]; then
  BIN="$TOKENGATE_BIN"
else
  (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
  BIN="$PROJECT/target/release/tokengate"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-nodes.XXXXXX")"
# KEEP=1 keeps the work directory (gateway log, nginx logs, wrk output).
trap 'cleanup; [[ "${KEEP:-0}" == 1 ]] && log "kept $WORK" || rm -rf "$WORK"' EXIT

declare -A NODE_PID=()
start_node() {  # index
  local i=$1 port=${NODE_PORTS[$1]} dir="$WORK/node$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# One process, so the kill below ends the node whole (a master's worker would outlive it).
master_process off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log logs/access.log combined buffer=64k;
$(nginx_temp_paths "$dir")
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port reuseport;
        location / { default_type application/json; return 200 '{"name":"node-$i","tagline":"You Know, for Search"}'; }
    }
}
EOF
  nginx -e stderr -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' >>"$dir/out" 2>&1 &
  NODE_PID[$i]=$!
  STARTED+=("$!")
  wait_port "$port" 10 || die "node $i did not start"
}
for i in 0 1 2; do start_node "$i"; done

python3 - "$WORK/tokens.txt" <<'EOF'
import base64, os, sys
with open(sys.argv[1], "w") as out:
    for i in range(100):
        raw = b"\x00\x01\x00\x01" + f"elastic/fleet-server/nodes-{i}:".encode() + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=")
        out.write(base64.b64encode(raw).decode().rstrip("=") + "\n")
EOF
cat >"$WORK/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "$WORK/data"
[upstream]
nodes = ["http://127.0.0.1:${NODE_PORTS[0]}", "http://127.0.0.1:${NODE_PORTS[1]}", "http://127.0.0.1:${NODE_PORTS[2]}"]
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[audit]
enabled = false
[log]
level = "info"
format = "json"
EOF
export ELASTIC_PASSWORD=node-bench-pw
"$BIN" --config "$WORK/gateway.toml" tokens import "$WORK/tokens.txt" >/dev/null
"$BIN" --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GW=$!
STARTED+=("$GW")
wait_port "$GW_PORT" 30 || die "gateway did not start (see $WORK/gateway.log)"

now() { date +%s.%N; }
log "wrk: ${DURATION}s, $CONNECTIONS connections, 3 nodes$( ((KILL)) && echo "; node 1 killed at ${KILL_AT}s, back at ${RESTART_AT}s")"
TOKENS_FILE="$WORK/tokens.txt" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH/bearer.lua" \
  "http://127.0.0.1:$GW_PORT/_search" >"$WORK/wrk.out" 2>&1 &
WRK=$!
STARTED+=("$WRK")
KILLED="" RESTARTED=""
if ((KILL)); then
  sleep "$KILL_AT"
  KILLED=$(now)
  kill -KILL "${NODE_PID[1]}"; wait "${NODE_PID[1]}" 2>/dev/null || true
  log "node 1 killed"
  sleep 1
  log "a second later: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^tokengate_upstream_(node|retries)' | tr '\n' ' ')"
  sleep "$((RESTART_AT - KILL_AT - 1))"
  RESTARTED=$(now)
  start_node 1
  log "node 1 started again"
fi
wait "$WRK" || true
grep RESULT "$WORK/wrk.out" || { cat "$WORK/wrk.out"; die "wrk gave no result"; }
for i in 0 1 2; do kill -TERM "${NODE_PID[$i]}" 2>/dev/null || true; wait "${NODE_PID[$i]}" 2>/dev/null || true; done

python3 - "$WORK" "$KILLED" "$RESTARTED" <<'EOF'
import json, re, sys, datetime
work, killed, restarted = sys.argv[1], sys.argv[2], sys.argv[3]
result = re.search(r"RESULT (.*)", open(f"{work}/wrk.out").read()).group(1)
fields = dict(kv.split("=") for kv in result.split())
print(f"requests {fields['requests']}, non-2xx {fields['non2xx']}, socket errors {fields['socket_errors']}, "
      f"{float(fields['rps']):.0f} req/s, p99 {int(fields['p99_us'])/1000:.2f} ms")
def stamp(line):
    t = json.loads(line)["timestamp"]
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
ejected = readmitted = None
for line in open(f"{work}/gateway.log"):
    if not line.startswith("{"):
        continue
    message = json.loads(line).get("message", "")
    if killed and "ejected" in message and ejected is None:
        ejected = stamp(line)
    if restarted and "back in rotation" in message and readmitted is None and stamp(line) >= float(restarted):
        readmitted = stamp(line)
if killed:
    print(f"ejected {1000 * (ejected - float(killed)):.0f} ms after the kill" if ejected else "never ejected")
    print(f"back in rotation {1000 * (readmitted - float(restarted)):.0f} ms after the restart" if readmitted else "never re-admitted")
for i in range(3):
    try:
        n = sum(1 for _ in open(f"{work}/node{i}/logs/access.log"))
    except FileNotFoundError:
        n = 0
    print(f"node {i} served {n}")
EOF
