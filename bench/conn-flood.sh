#!/usr/bin/env bash
# Connection-flood check of the gateway's connection limits, on 127.0.0.0/8 only.
#
#   bash bench/conn-flood.sh                          # 20,000 idle connections, 10 s probes
#   IDLE=5000 PROBE_SECONDS=5 bash bench/conn-flood.sh
#   TOKENGATE_BIN=/path/to/other/tokengate bash bench/conn-flood.sh   # measure another build
#
# Starts nginx as a stand-in Elasticsearch and the release gateway in front of it, creates one
# service token through the API as `elastic`, then, phase by phase, holds IDLE connections open
# (bench/flood.py hold) while a well-behaved client (bench/flood.py probe) sends GET / with the
# token, one fresh connection per request, for PROBE_SECONDS:
#   baseline     no flood
#   one-address  IDLE keep-alive connections from 127.0.0.1 (each answered 401, then idle);
#                the probe comes from 127.0.0.2: max_connections_per_ip turns the flood away
#   spread       IDLE keep-alive connections over 127.0.0.2..127.0.0.(1+SPREAD_ADDRS), more
#                than max_connections; the probe comes from 127.0.0.1: idle ones make room
#   silent       IDLE connections over the same addresses that never send a byte; the probe
#                comes from 127.0.0.1: newer ones take the place of older ones, and
#                first_request_timeout closes what is left
# Prints a Markdown table; everything lands in bench/results/conn-flood-<UTC timestamp>/.
# Stops what it started, by PID, on exit and on Ctrl-C.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
IDLE="${IDLE:-20000}"                    # connections held open per flood phase
PROBE_SECONDS="${PROBE_SECONDS:-10}"     # the probe's duration per phase
PROBE_RATE="${PROBE_RATE:-200}"          # its requests per second (sequential, paced)
SPREAD_ADDRS="${SPREAD_ADDRS:-20}"       # source addresses of the spread and silent floods
MAX_CONNECTIONS="${MAX_CONNECTIONS:-10000}"
PER_IP="${PER_IP:-1024}"
FIRST_REQUEST_TIMEOUT="${FIRST_REQUEST_TIMEOUT:-10s}"
PHASES="${PHASES:-baseline one-address spread silent}"
RAMP_TIMEOUT="${RAMP_TIMEOUT:-120}"      # seconds for every flood connection to be tried
GW_PORT="${GW_PORT:-18090}"
UPSTREAM_PORT="${UPSTREAM_PORT:-19290}"
GW_LOG="${GW_LOG:-warn}"
BUILD="${BUILD:-1}"
RESULTS_DIR="${RESULTS_DIR:-$BENCH/results/conn-flood-$(date -u +%Y%m%dT%H%M%SZ)}"

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int IDLE 1 60000
need_int PROBE_SECONDS 1 120
need_int SPREAD_ADDRS 1 200
need_int PROBE_RATE 1 5000
need_int RAMP_TIMEOUT 5 600
HOLD_SECONDS=$(( RAMP_TIMEOUT + PROBE_SECONDS + 30 ))   # a flood process ends by itself after this

for t in curl nginx python3 ss timeout cargo; do
  command -v "$t" >/dev/null || die "$t not found (bash bench/install-deps.sh)"
done
for p in "$GW_PORT" "$UPSTREAM_PORT"; do
  [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] || die "port $p already in use"
done

# Every held connection is a descriptor: as many as allowed, and floods split over processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
PER_PROC=$(( FDS - 1000 < 15000 ? FDS - 1000 : 15000 ))
(( PER_PROC >= 100 )) || die "open-file limit $FDS is too low"
(( MAX_CONNECTIONS + 2000 <= FDS )) || log "WARNING: open-file limit $FDS is close to max_connections $MAX_CONNECTIONS"

mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> $RESULTS_DIR"

# ---------------------------------------------------------------- build
gateway_binary "$RESULTS_DIR"

# ---------------------------------------------------------------- upstream
UP_DIR="$RESULTS_DIR/upstream"
mkdir -p "$UP_DIR/logs" "$UP_DIR/tmp"
cat >"$UP_DIR/nginx.conf" <<EOF
# Stand-in Elasticsearch for the connection-flood check.
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    default_type application/json;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
$(nginx_temp_paths "$UP_DIR")
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location = / {
            return 200 '{"name":"bench-node-1","cluster_name":"bench","version":{"number":"8.15.0"},"tagline":"You Know, for Search"}';
        }
        location / { return 404 '{"error":"not found","status":404}'; }
    }
}
EOF
nginx -e stderr -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -g 'daemon off;' >"$UP_DIR/nginx.out" 2>&1 &
STARTED+=("$!")
wait_port "$UPSTREAM_PORT" || die "upstream did not listen (see $UP_DIR/nginx.out)"

# ---------------------------------------------------------------- gateway
GW_DATA="$RESULTS_DIR/gateway-data"
mkdir -p "$GW_DATA"
cat >"$RESULTS_DIR/tokengate.toml" <<EOF
[server]
max_connections = $MAX_CONNECTIONS
max_connections_per_ip = $PER_IP
first_request_timeout = "$FIRST_REQUEST_TIMEOUT"
EOF
if ! "$GW_BIN" check-config --config "$RESULTS_DIR/tokengate.toml" >"$RESULTS_DIR/check-config.out" 2>&1; then
  # A shared target directory can hold another tree's build; an older build lacks the keys.
  [[ -n "${TOKENGATE_BIN:-}" ]] || die "$SRC_BIN rejects the limits (see check-config.out): not this tree's build?"
  log "this build has no per-address or first-request limits: max_connections only"
  printf '[server]\nmax_connections = %s\n' "$MAX_CONNECTIONS" >"$RESULTS_DIR/tokengate.toml"
fi
PASSWORD="flood-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
ELASTIC_PASSWORD="$PASSWORD" RUST_LOG="$GW_LOG" \
  "$GW_BIN" --config "$RESULTS_DIR/tokengate.toml" --listen "127.0.0.1:$GW_PORT" \
  --upstream "http://127.0.0.1:$UPSTREAM_PORT" --data-dir "$GW_DATA" \
  >"$RESULTS_DIR/gateway.log" 2>&1 &
GW_PID=$!; STARTED+=("$GW_PID")
wait_port "$GW_PORT" || die "gateway did not listen (see $RESULTS_DIR/gateway.log)"

log "creating a token through the API as elastic"
python3 "$BENCH/client.py" create-tokens --port "$GW_PORT" --password "$PASSWORD" \
  --count 1 --threads 1 --out "$RESULTS_DIR/tokens.txt" >&2
TOKEN=$(head -1 "$RESULTS_DIR/tokens.txt")
[[ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$GW_PORT/")" == 200 ]] || die "the token is not accepted"

gw_sockets() { ls "/proc/$GW_PID/fd" 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- phases
ROWS="$RESULTS_DIR/rows.tsv"
: >"$ROWS"

# field NAME LINE -> the value of NAME=... in a RESULT line
field() { local kv; for kv in $2; do [[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return; }; done; echo "-"; }

# run_phase name sources mode probe_source
run_phase() {
  local name=$1 sources=$2 mode=$3 probe_source=$4
  local procs=0 pids=() outs=() readies=() left=$IDLE i n
  if [[ -n "$sources" ]]; then
    procs=$(( (IDLE + PER_PROC - 1) / PER_PROC ))
    for (( i=0; i<procs; i++ )); do
      n=$(( left / (procs - i) )); left=$(( left - n ))
      outs+=("$RESULTS_DIR/$name.hold.$i.out"); readies+=("$RESULTS_DIR/$name.ready.$i")
      python3 "$BENCH/flood.py" hold --port "$GW_PORT" --count "$n" --sources "$sources" \
        --mode "$mode" --seconds "$HOLD_SECONDS" --ready "${readies[$i]}" >"${outs[$i]}" 2>&1 &
      pids+=("$!"); STARTED+=("$!")
    done
    log "$name: $IDLE $mode connections from $procs process(es)"
    local waited=0 ready
    while :; do
      ready=0
      for f in "${readies[@]}"; do [[ -e "$f" ]] && ready=$(( ready + 1 )); done
      (( ready == procs )) && break
      (( waited >= RAMP_TIMEOUT * 10 )) && { log "$name: not every connection was tried within ${RAMP_TIMEOUT}s"; break; }
      sleep 0.1; waited=$(( waited + 1 ))
    done
    log "$name: flood in place after $(( waited / 10 )).$(( waited % 10 )) s"
  fi
  local fds_before; fds_before=$(gw_sockets)
  log "$name: probing from $probe_source for ${PROBE_SECONDS}s (gateway holds $fds_before descriptors)"
  local probe
  probe=$(timeout -k 5 $(( PROBE_SECONDS + 30 )) python3 "$BENCH/flood.py" probe --port "$GW_PORT" \
    --source "$probe_source" --token "$TOKEN" --seconds "$PROBE_SECONDS" --rate "$PROBE_RATE" \
    | grep -m1 '^RESULT ') || probe="RESULT"
  echo "$probe" >"$RESULTS_DIR/$name.probe.out"
  local sums="- - - - - -" age="-"
  if (( procs > 0 )); then
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    sums=$(cat "${outs[@]}" | grep '^RESULT ' | awk '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] }
      } END { printf "%d %d %d %d %d %d", s["established"], s["refused"], s["answered_401"],
              s["closed_later"], s["open_at_end"], s["connect_failed"] + s["unfinished"] }')
    age=$(cat "${outs[@]}" | grep '^RESULT ' | sed -n 's/.*median_close_age_s=\([^ ]*\).*/\1/p' | paste -sd/)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$IDLE" "$sums" "$age" "$fds_before" \
    "$(field requests "$probe")" "$(field statuses "$probe")" "$(field errors "$probe")" \
    "$(field p50_ms "$probe")" "$(field p99_ms "$probe")" "$(field max_ms "$probe")" "$probe_source" >>"$ROWS"
  log "$name: flood [established refused answered closed-later open failed] = [$sums]; probe: ${probe#RESULT }"
  # Let the gateway notice the closes before the next phase.
  for i in $(seq 150); do (( $(gw_sockets) < 200 )) && break; sleep 0.1; done
}

SPREAD=$(for (( i=2; i<2+SPREAD_ADDRS; i++ )); do printf '127.0.0.%d,' "$i"; done); SPREAD=${SPREAD%,}
for phase in $PHASES; do
  case $phase in
    baseline)    run_phase baseline "" keepalive 127.0.0.2 ;;
    one-address) run_phase one-address 127.0.0.1 keepalive 127.0.0.2 ;;
    spread)      run_phase spread "$SPREAD" keepalive 127.0.0.1 ;;
    silent)      run_phase silent "$SPREAD" silent 127.0.0.1 ;;
    *) die "unknown phase $phase" ;;
  esac
done
kill -0 "$GW_PID" 2>/dev/null || log "WARNING: the gateway died during the run (see gateway.log)"

# ---------------------------------------------------------------- report
{
  echo "# tokengate connection flood"
  echo
  echo "    date_utc: $(date -u +%FT%TZ)"
  echo "    cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "    tokengate: $("$GW_BIN" --version 2>/dev/null || echo '?') ($(cd "$PROJECT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "    max_connections=$MAX_CONNECTIONS max_connections_per_ip=$PER_IP first_request_timeout=$FIRST_REQUEST_TIMEOUT"
  echo "    flood: $IDLE connections per phase; spread/silent over $SPREAD_ADDRS addresses"
  echo "    probe: ${PROBE_SECONDS}s at ${PROBE_RATE}/s once the flood is in place, a fresh connection per request"
  echo
  echo "| phase | flood conns | established | refused at once | answered 401 | closed later by gateway | median s to close (per flood process) | open at end | failed | gateway fds | probe from | probe requests | statuses | errors | p50 ms | p99 ms | max ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|---:|"
  awk -F'\t' '{ split($3, s, " ");
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
      $1, ($1 == "baseline" ? "0" : $2), s[1], s[2], s[3], s[4], $4, s[5], s[6], $5, $12, $6, $7, $8, $9, $10, $11 }' "$ROWS"
  echo
  echo "refused at once: a 429 or a close before any answer; closed later: evicted to make room (spread) or past first_request_timeout (silent)."
} >"$RESULTS_DIR/summary.md"
cat "$RESULTS_DIR/summary.md"
log "summary: $RESULTS_DIR/summary.md"
