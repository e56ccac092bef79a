#!/usr/bin/env bash
# Load benchmark of the gateway against a real upstream (nginx), on 127.0.0.1 only.
#
#   bash bench/run.sh                         # defaults: 1000 tokens, 2 s warm-up + 10 s per run
#   DURATION=5 TOKENS=10000 bash bench/run.sh
#
# Starts nginx as a stand-in Elasticsearch (root document, _bulk), builds and
# starts tokengate in front of it, creates TOKENS service tokens through the
# API, then measures with wrk:
#   get_direct   GET /  straight to the upstream (baseline)
#   get_gw       GET /  through the gateway, rotating over all tokens
#   deny_gw      GET /  with invalid tokens (right names, wrong secrets): the 401 path
#   bulk_direct  POST /_bulk, 4 KiB body, straight to the upstream
#   bulk_gw      POST /_bulk, 4 KiB body, through the gateway
# plus the latency a proxied GET adds (1000 sequential requests each way) and
# token-create throughput with CREATE_CLIENTS concurrent clients.
# Prints a Markdown table; everything lands in bench/results/<UTC timestamp>/.
# Stops what it started, by PID, on exit.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
DURATION="${DURATION:-10}"            # seconds measured per wrk run
WARMUP="${WARMUP:-2}"                 # seconds of unrecorded load before each run
TOKENS="${TOKENS:-1000}"              # service tokens created before measuring
CONNS="${CONNS:-64}"                  # wrk connections
THREADS="${THREADS:-1}"               # wrk threads
CLIENT_CPU="${CLIENT_CPU:-0}"         # wrk, python clients and this script
SERVER_CPU="${SERVER_CPU:-1}"         # the gateway
UPSTREAM_CPU="${UPSTREAM_CPU:-$SERVER_CPU}"
GW_PORT="${GW_PORT:-18080}"
UPSTREAM_PORT="${UPSTREAM_PORT:-19200}"
SCENARIOS="${SCENARIOS:-get_direct get_gw deny_gw bulk_direct bulk_gw}"
LATENCY_REQUESTS="${LATENCY_REQUESTS:-1000}"
CREATE_CLIENTS="${CREATE_CLIENTS:-64}"
CREATE_DURATION="${CREATE_DURATION:-$DURATION}"
GW_LOG="${GW_LOG:-warn}"              # gateway log filter (RUST_LOG); per-request logs stay off
BUILD="${BUILD:-1}"                   # 0: use the existing target/release/tokengate
RESULTS_DIR="${RESULTS_DIR:-$BENCH/results/$(date -u +%Y%m%dT%H%M%SZ)}"

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int DURATION 1 300
need_int CREATE_DURATION 1 300
need_int WARMUP 0 60
need_int TOKENS 1 1000000
KILL_AFTER=$(( DURATION > CREATE_DURATION ? DURATION + 30 : CREATE_DURATION + 30 ))

for t in wrk curl nginx python3 taskset ss timeout cargo; do
  command -v "$t" >/dev/null || die "$t not found (bash bench/install-deps.sh)"
done
NCPU=$(nproc)
(( CLIENT_CPU < NCPU && SERVER_CPU < NCPU && UPSTREAM_CPU < NCPU )) || die "CPU index >= nproc ($NCPU)"
for p in "$GW_PORT" "$UPSTREAM_PORT"; do
  [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] || die "port $p already in use"
done

mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> $RESULTS_DIR"

# ---------------------------------------------------------------- build
GW_BIN="$PROJECT/target/release/tokengate"
if [[ "$BUILD" == 1 ]]; then
  log "cargo build --release"
  (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
fi
[[ -x "$GW_BIN" ]] || die "$GW_BIN missing (BUILD=1 builds it)"

# From here on this script and its clients run on CLIENT_CPU.
taskset -cp "$CLIENT_CPU" $$ >/dev/null

# ---------------------------------------------------------------- process control

tree_of() {  # pid -> pid and its direct children (nginx master + worker)
  echo "$1" $(ps -o pid= --ppid "$1" 2>/dev/null)
}

cpu_ticks() {  # utime+stime (clock ticks, all threads) summed over pids
  local sum=0 pid line
  local -a f
  for pid in "$@"; do
    read -r line <"/proc/$pid/stat" 2>/dev/null || continue
    read -r -a f <<<"${line##*) }"   # f[11]=utime f[12]=stime
    sum=$(( sum + f[11] + f[12] ))
  done
  echo "$sum"
}

# ---------------------------------------------------------------- upstream
UP_DIR="$RESULTS_DIR/upstream"
mkdir -p "$UP_DIR/logs" "$UP_DIR/tmp"
cat >"$UP_DIR/nginx.conf" <<EOF
# Stand-in Elasticsearch for the gateway benchmark.
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
    client_max_body_size 16m;
    client_body_buffer_size 64k;
$(nginx_temp_paths "$UP_DIR")
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location = / {
            return 200 '{"name":"bench-node-1","cluster_name":"bench","cluster_uuid":"x4Qx0Yq7TQyZ2s8dX0o1Fg","version":{"number":"8.15.0","build_flavor":"default","build_type":"tar","lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}';
        }
        location = /_bulk {
            if (\$request_method != POST) { return 405 '{"error":"method not allowed","status":405}'; }
            return 200 '{"took":1,"errors":false,"items":[{"index":{"_index":"bench","_id":"1","status":201}}]}';
        }
        # Self-check only: shows whether Authorization reached the upstream.
        location = /_bench/echo {
            return 200 '{"authorization":"\$http_authorization"}';
        }
        location / { return 404 '{"error":"not found","status":404}'; }
    }
}
EOF
taskset -c "$UPSTREAM_CPU" nginx -e stderr -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -g 'daemon off;' \
  >"$UP_DIR/nginx.out" 2>&1 &
UP_PID=$!; STARTED+=("$UP_PID")
wait_port "$UPSTREAM_PORT" || die "upstream did not listen (see $UP_DIR/nginx.out)"

# ---------------------------------------------------------------- gateway
GW_DATA="$RESULTS_DIR/gateway-data"
mkdir -p "$GW_DATA"
PASSWORD="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# deny_gw sends wrong tokens from one address as fast as it can: the per-address failure
# throttle would answer 429 from then on (also to the later valid-token runs), so it is lifted
# to measure the 401 path; bench/auth-flood.sh measures the throttle.
GW_CONF="$RESULTS_DIR/gateway.toml"
printf '[security]\nfailed_auth_burst = 1000000000\nfailed_auth_per_minute = 1000000000\n' >"$GW_CONF"
ELASTIC_PASSWORD="$PASSWORD" RUST_LOG="$GW_LOG" \
  taskset -c "$SERVER_CPU" "$GW_BIN" --config "$GW_CONF" --listen "127.0.0.1:$GW_PORT" \
  --upstream "http://127.0.0.1:$UPSTREAM_PORT" --data-dir "$GW_DATA" \
  >"$RESULTS_DIR/gateway.log" 2>&1 &
GW_PID=$!; STARTED+=("$GW_PID")
wait_port "$GW_PORT" || die "gateway did not listen (see $RESULTS_DIR/gateway.log)"
UP_TREE="$(tree_of "$UP_PID")"
AUTH_BASIC="Basic $(printf 'elastic:%s' "$PASSWORD" | base64 -w0)"

# ---------------------------------------------------------------- tokens
log "creating $TOKENS tokens through the API"
python3 "$BENCH/client.py" create-tokens --port "$GW_PORT" --password "$PASSWORD" \
  --count "$TOKENS" --out "$RESULTS_DIR/tokens.txt" | tee "$RESULTS_DIR/create-tokens.txt" >&2
python3 "$BENCH/client.py" invalid-tokens --src "$RESULTS_DIR/tokens.txt" --out "$RESULTS_DIR/invalid.txt"

BULK="$RESULTS_DIR/bulk-4k.ndjson"
python3 - "$BULK" <<'EOF'
import sys
lines, n = [], 0
while True:
    doc = '{"index":{"_index":"bench"}}\n{"@timestamp":"2024-05-01T12:00:%02dZ","message":"benchmark event %05d","level":"info","service":"tokengate-bench"}\n' % (n % 60, n)
    if sum(map(len, lines)) + len(doc) > 4096:
        break
    lines.append(doc); n += 1
body = "".join(lines)
body = body[:-1] + " " * (4096 - len(body)) + "\n"   # pad the last line to exactly 4096 bytes
open(sys.argv[1], "w").write(body)
EOF

# ---------------------------------------------------------------- checks
GW="http://127.0.0.1:$GW_PORT"
VALID=$(head -1 "$RESULTS_DIR/tokens.txt"); LAST=$(tail -1 "$RESULTS_DIR/tokens.txt")
INVALID=$(head -1 "$RESULTS_DIR/invalid.txt")
code() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@"; }
failed=0
check() { if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; failed=1; fi; }
{
  check "valid token -> 200" 200 "$(code -H "Authorization: Bearer $VALID" "$GW/")"
  check "last token -> 200" 200 "$(code -H "Authorization: Bearer $LAST" "$GW/")"
  check "upstream body passed through" '"tagline":"You Know, for Search"' \
    "$(curl -s --max-time 5 -H "Authorization: Bearer $VALID" "$GW/" | grep -o '"tagline":"[^"]*"')"
  check "invalid secret -> 401" 401 "$(code -H "Authorization: Bearer $INVALID" "$GW/")"
  check "no credentials -> 401" 401 "$(code "$GW/")"
  check "bulk POST -> 200" 200 "$(code -H "Authorization: Bearer $VALID" -H 'Content-Type: application/x-ndjson' --data-binary @"$BULK" "$GW/_bulk")"
  check "Authorization not forwarded" '"authorization":""' \
    "$(curl -s --max-time 5 -H "Authorization: Bearer $VALID" "$GW/_bench/echo" | grep -o '"authorization":"[^"]*"')"
} | tee "$RESULTS_DIR/checks.txt" >&2
grep -q '^FAIL' "$RESULTS_DIR/checks.txt" && die "functional checks failed"

# ---------------------------------------------------------------- environment
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $NCPU"
  echo "kernel: $(uname -r)"
  echo "tokengate: $("$GW_BIN" --version 2>/dev/null || echo '?') ($(cd "$PROJECT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
  echo "wrk: -t$THREADS -c$CONNS -d${DURATION}s after ${WARMUP}s warm-up"
  echo "pinning: client=cpu$CLIENT_CPU gateway=cpu$SERVER_CPU upstream=cpu$UPSTREAM_CPU"
  echo "tokens: $TOKENS"
} >"$RESULTS_DIR/env.txt"

# ---------------------------------------------------------------- measurement
TCK=$(getconf CLK_TCK)
ROWS="$RESULTS_DIR/rows.tsv"
: >"$ROWS"

# run_wrk tag url script conns duration [env...] -> appends a row to $ROWS
run_wrk() {
  local tag=$1 url=$2 script=$3 conns=$4 dur=$5; shift 5
  local out="$RESULTS_DIR/$tag.out" tf="$RESULTS_DIR/.time"
  local w=(wrk -t"$THREADS" -c"$conns" --timeout 5s -s "$script")
  if (( WARMUP > 0 )); then
    env PHASE=warmup "$@" timeout -k 5 "$KILL_AFTER" "${w[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
  fi
  local g0 g1 u0 u1 cu cs
  g0=$(cpu_ticks "$GW_PID"); u0=$(cpu_ticks $UP_TREE)
  TIMEFORMAT='%3U %3S'
  { time env PHASE=run "$@" timeout -k 5 "$KILL_AFTER" "${w[@]}" -d"${dur}s" --latency "$url" >"$out" 2>&1 ; } 2>"$tf" || true
  g1=$(cpu_ticks "$GW_PID"); u1=$(cpu_ticks $UP_TREE)
  read -r cu cs <"$tf"
  local line
  line=$(grep -m1 '^RESULT ' "$out") || { log "no RESULT from wrk for $tag (see $out)"; return 0; }
  local -A r=()
  local kv
  for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
  local gw_us="" up_us client
  [[ $tag != *direct* ]] && gw_us=$(awk -v t=$(( g1 - g0 )) -v n="${r[requests]}" -v k="$TCK" 'BEGIN{printf "%.1f", t/k*1e6/n}')
  up_us=$(awk -v t=$(( u1 - u0 )) -v n="${r[requests]}" -v k="$TCK" 'BEGIN{printf "%.1f", t/k*1e6/n}')
  client=$(awk -v u="$cu" -v s="$cs" -v d="${r[duration_s]}" 'BEGIN{printf "%.0f", (u+s)/d*100}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tag" "${r[requests]}" "${r[rps]}" \
    "${r[p50_us]}" "${r[p90_us]}" "${r[p99_us]}" "${r[non2xx]}" "${r[socket_errors]}" \
    "$gw_us" "$up_us" "$client" >>"$ROWS"
  log "$(printf '%-12s %9.0f req/s  p50 %6s us  p99 %7s us  non-2xx %s  gateway %s us/req' \
    "$tag" "${r[rps]}" "${r[p50_us]}" "${r[p99_us]}" "${r[non2xx]}" "${gw_us:--}")"
}

UP="http://127.0.0.1:$UPSTREAM_PORT"
for sc in $SCENARIOS; do
  case $sc in
    get_direct)  run_wrk "$sc" "$UP/" "$BENCH/bearer.lua" "$CONNS" "$DURATION" TOKENS_FILE="$RESULTS_DIR/tokens.txt" ;;
    get_gw)      run_wrk "$sc" "$GW/" "$BENCH/bearer.lua" "$CONNS" "$DURATION" TOKENS_FILE="$RESULTS_DIR/tokens.txt" ;;
    deny_gw)     run_wrk "$sc" "$GW/" "$BENCH/bearer.lua" "$CONNS" "$DURATION" TOKENS_FILE="$RESULTS_DIR/invalid.txt" ;;
    bulk_direct) run_wrk "$sc" "$UP/_bulk" "$BENCH/bearer.lua" "$CONNS" "$DURATION" TOKENS_FILE="$RESULTS_DIR/tokens.txt" REQ_METHOD=POST REQ_PATH=/_bulk BODY_FILE="$BULK" ;;
    bulk_gw)     run_wrk "$sc" "$GW/_bulk" "$BENCH/bearer.lua" "$CONNS" "$DURATION" TOKENS_FILE="$RESULTS_DIR/tokens.txt" REQ_METHOD=POST REQ_PATH=/_bulk BODY_FILE="$BULK" ;;
    *) die "unknown scenario $sc" ;;
  esac
done

log "added latency: $LATENCY_REQUESTS sequential GETs each way"
python3 "$BENCH/client.py" latency --gw-port "$GW_PORT" --direct-port "$UPSTREAM_PORT" \
  --tokens "$RESULTS_DIR/tokens.txt" --requests "$LATENCY_REQUESTS" >"$RESULTS_DIR/latency.out"
LAT=$(grep -m1 '^RESULT ' "$RESULTS_DIR/latency.out")
declare -A L=()
for kv in ${LAT#RESULT }; do L[${kv%%=*}]=${kv#*=}; done

log "token creation: $CREATE_CLIENTS concurrent clients"
TOKENS_BEFORE=$(curl -s --max-time 10 -H "Authorization: $AUTH_BASIC" "$GW/_security/service/elastic/fleet-server/credential" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
run_wrk create_gw "$GW/" "$BENCH/create.lua" "$CREATE_CLIENTS" "$CREATE_DURATION" \
  AUTH_HEADER="$AUTH_BASIC" RUN_ID="c$(date +%s)"
TOKENS_AFTER=$(curl -s --max-time 10 -H "Authorization: $AUTH_BASIC" "$GW/_security/service/elastic/fleet-server/credential" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
JOURNAL_BYTES=$(stat -c %s "$GW_DATA/tokens.journal" 2>/dev/null || echo '?')
GW_RSS=$(awk '/^VmRSS/{print $2" "$3}' "/proc/$GW_PID/status" 2>/dev/null || echo '?')

# ---------------------------------------------------------------- report
{
  echo "# tokengate load benchmark"
  echo
  sed 's/^/    /' "$RESULTS_DIR/env.txt"
  echo
  echo "| scenario | req/s | p50 µs | p90 µs | p99 µs | non-2xx | socket errors | gateway CPU-µs/req | upstream CPU-µs/req | client core % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '{printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $3, $4, $5, $6, $7, $8, ($9==""?"—":$9), $10, $11}' "$ROWS"
  echo
  echo "deny_gw: every answer is expected to be a 401 (non-2xx = requests)."
  echo "create_gw: token creates, $CREATE_CLIENTS concurrent clients (POST …/credential/token/<name> as elastic, each answered after fsync);"
  echo "tokens in the store before/after: $TOKENS_BEFORE / $TOKENS_AFTER; journal $JOURNAL_BYTES bytes; gateway VmRSS $GW_RSS."
  echo
  echo "Added latency of a proxied GET ($LATENCY_REQUESTS sequential requests each way, one keep-alive connection, Python client):"
  echo
  echo "| path | p50 µs | p90 µs | p99 µs |"
  echo "|---|---:|---:|---:|"
  echo "| direct | ${L[direct_p50_us]} | ${L[direct_p90_us]} | ${L[direct_p99_us]} |"
  echo "| via gateway | ${L[gw_p50_us]} | ${L[gw_p90_us]} | ${L[gw_p99_us]} |"
  echo
  echo "added (median via gateway − median direct): **${L[added_p50_us]} µs**"
} >"$RESULTS_DIR/summary.md"
cat "$RESULTS_DIR/summary.md"
kill -0 "$GW_PID" 2>/dev/null || log "WARNING: the gateway died during the run (see gateway.log)"
log "summary: $RESULTS_DIR/summary.md"
