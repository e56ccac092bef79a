#!/usr/bin/env bash
# What failed-authentication floods cost a valid client, on 127.0.0.0/8 only.
#
#   bash bench/auth-flood.sh                  # defaults: 8 s per phase, ~1.5 min in all
#   PHASE=5 PHASES="quiet wrong_bearer" bash bench/auth-flood.sh
#
# Starts nginx as a stand-in Elasticsearch, builds (cargo build --release) and starts tokengate
# in front of it with the default limits, bootstraps `elastic` (bcrypt cost 10, as
# Elasticsearch), creates a few service tokens, then for each phase runs a flood from its own
# loopback source addresses while a valid client (wrk -t1 -c4, rotating over the valid tokens,
# from 127.0.0.1) measures its latency:
#   quiet              no flood: the baseline
#   wrong_password     wrong passwords for `elastic`, a fresh one per request, from 127.0.0.3
#   wrong_password_64  the same from 64 addresses (127.0.1.1-64): the password pool's bound
#   unknown_user       unknown users, from 127.0.0.4
#   unknown_user_64    the same from 64 addresses (127.0.2.1-64)
#   wrong_bearer       wrong bearer tokens (real names, wrong secrets) from 127.0.0.2
#   quiet_after        no flood again: nothing left behind
# and last a timing probe: wrong password vs unknown user, sequential, each from an address of
# its own (127.0.3.x), so neither is throttled.
# Prints a Markdown table (valid client's req/s, p50, p99; the flood's answers by status; the
# gateway's CPU); everything lands in bench/results/auth-flood-<UTC timestamp>/.
# Every run is bounded (wrk -d, the flood's own clock, timeout); stops only what it started,
# by PID, also on Ctrl-C.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
PHASE="${PHASE:-8}"                   # seconds the valid client measures per phase
PHASES="${PHASES:-quiet wrong_password wrong_password_64 unknown_user unknown_user_64 wrong_bearer quiet_after}"
FLOOD_CONNS="${FLOOD_CONNS:-16}"      # flood connections (the 64-address phases use 64)
TIMING_SAMPLES="${TIMING_SAMPLES:-30}" # per kind in the timing probe; 0 skips it
CLIENT_CPU="${CLIENT_CPU:-0}"         # wrk, the flood (SCHED_IDLE, so it cannot delay wrk) and this script
SERVER_CPU="${SERVER_CPU:-1}"         # the gateway and the upstream
GW_PORT="${GW_PORT:-18180}"
UPSTREAM_PORT="${UPSTREAM_PORT:-19280}"
GW_LOG="${GW_LOG:-warn}"
BUILD="${BUILD:-1}"                   # 0: use the existing release binary
TARGET_DIR="${CARGO_TARGET_DIR:-$PROJECT/target}"
RESULTS_DIR="${RESULTS_DIR:-$BENCH/results/auth-flood-$(date -u +%Y%m%dT%H%M%SZ)}"

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int PHASE 1 20
need_int TIMING_SAMPLES 0 100
FLOOD_SECS=$(( PHASE + 2 ))           # starts 1 s before the valid client, ends after it
KILL_AFTER=$(( PHASE + 30 ))

for t in wrk curl nginx python3 taskset chrt timeout ss; do
  command -v "$t" >/dev/null || die "$t not found (bash bench/install-deps.sh)"
done
NCPU=$(nproc)
(( CLIENT_CPU < NCPU && SERVER_CPU < NCPU )) || die "CPU index >= nproc ($NCPU)"
for p in "$GW_PORT" "$UPSTREAM_PORT"; do
  [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] || die "port $p already in use"
done
mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> $RESULTS_DIR"

# ---------------------------------------------------------------- build
GW_BIN="$TARGET_DIR/release/tokengate"
if [[ "$BUILD" == 1 ]]; then
  log "cargo build --release"
  (cd "$PROJECT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet) || die "build failed"
fi
[[ -x "$GW_BIN" ]] || die "$GW_BIN missing (BUILD=1 builds it)"
taskset -cp "$CLIENT_CPU" $$ >/dev/null

# ---------------------------------------------------------------- process control
# Runs a bounded command in the background and waits for it: a trapped INT or TERM interrupts
# `wait` at once (a foreground wrk under `timeout` sits in a process group of its own, never
# sees Ctrl-C, and bash then skips the INT trap), so Ctrl-C stops the script and cleanup
# stops the command by PID.
run_bounded() {  # outfile command...
  local out=$1 pid; shift
  "$@" >"$out" 2>&1 &
  pid=$!; STARTED+=("$pid")
  wait "$pid" || true
}


cpu_ticks() {  # utime+stime of a pid (all threads), clock ticks
  local line
  local -a f
  read -r line <"/proc/$1/stat" 2>/dev/null || { echo 0; return; }
  read -r -a f <<<"${line##*) }"
  echo $(( f[11] + f[12] ))
}

# ---------------------------------------------------------------- upstream
UP_DIR="$RESULTS_DIR/upstream"
mkdir -p "$UP_DIR/logs" "$UP_DIR/tmp"
cat >"$UP_DIR/nginx.conf" <<EOF
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
$(nginx_temp_paths "$UP_DIR")
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location / { return 200 '{"name":"bench-node-1","cluster_name":"bench","tagline":"You Know, for Search"}'; }
    }
}
EOF
taskset -c "$SERVER_CPU" nginx -e stderr -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -g 'daemon off;' \
  >"$UP_DIR/nginx.out" 2>&1 &
STARTED+=("$!")
wait_port "$UPSTREAM_PORT" || die "upstream did not listen (see $UP_DIR/nginx.out)"

# ---------------------------------------------------------------- gateway
GW_DATA="$RESULTS_DIR/gateway-data"
mkdir -p "$GW_DATA"
PASSWORD="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
ELASTIC_PASSWORD="$PASSWORD" RUST_LOG="$GW_LOG" \
  taskset -c "$SERVER_CPU" "$GW_BIN" --listen "127.0.0.1:$GW_PORT" \
  --upstream "http://127.0.0.1:$UPSTREAM_PORT" --data-dir "$GW_DATA" \
  >"$RESULTS_DIR/gateway.log" 2>&1 &
GW_PID=$!; STARTED+=("$GW_PID")
wait_port "$GW_PORT" || die "gateway did not listen (see $RESULTS_DIR/gateway.log)"

python3 "$BENCH/client.py" create-tokens --port "$GW_PORT" --password "$PASSWORD" \
  --count 4 --threads 1 --out "$RESULTS_DIR/tokens.txt" >&2
GW="http://127.0.0.1:$GW_PORT"
code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' \
  -H "Authorization: Bearer $(head -1 "$RESULTS_DIR/tokens.txt")" "$GW/")
[[ "$code" == 200 ]] || die "a valid token got $code"

{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $NCPU"
  echo "tokengate: $(cd "$PROJECT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), default limits, elastic at bcrypt cost 10"
  echo "pinning: client+flood=cpu$CLIENT_CPU (flood at SCHED_IDLE) gateway+upstream=cpu$SERVER_CPU"
  echo "valid client: wrk -t1 -c4 -d${PHASE}s from 127.0.0.1; flood: $FLOOD_CONNS connections (64 in *_64), ${FLOOD_SECS}s"
} >"$RESULTS_DIR/env.txt"

# ---------------------------------------------------------------- phases
TCK=$(getconf CLK_TCK)
ROWS="$RESULTS_DIR/rows.tsv"
: >"$ROWS"

flood_args() {  # phase -> flood arguments, empty for none
  case $1 in
    quiet|quiet_after) ;;
    wrong_password)    echo "--kind wrong-password --sources 127.0.0.3 --conns $FLOOD_CONNS" ;;
    wrong_password_64) echo "--kind wrong-password --sources 127.0.1.1-64 --conns 64" ;;
    unknown_user)      echo "--kind unknown-user --sources 127.0.0.4 --conns $FLOOD_CONNS" ;;
    unknown_user_64)   echo "--kind unknown-user --sources 127.0.2.1-64 --conns 64" ;;
    wrong_bearer)      echo "--kind wrong-bearer --sources 127.0.0.2 --conns $FLOOD_CONNS --tokens $RESULTS_DIR/tokens.txt" ;;
    *) die "unknown phase $1" ;;
  esac
}

run_phase() {
  local phase=$1 args flood_pid="" g0 g1 t0 t1
  kill -0 "$GW_PID" 2>/dev/null || die "the gateway is gone (see $RESULTS_DIR/gateway.log)"
  args=$(flood_args "$phase")
  local fout="$RESULTS_DIR/$phase.flood" wout="$RESULTS_DIR/$phase.wrk"
  g0=$(cpu_ticks "$GW_PID"); t0=$EPOCHREALTIME
  if [[ -n "$args" ]]; then
    # shellcheck disable=SC2086
    chrt -i 0 timeout -k 5 "$KILL_AFTER" python3 "$BENCH/auth_flood.py" flood --port "$GW_PORT" \
      --seconds "$FLOOD_SECS" $args >"$fout" 2>&1 &
    flood_pid=$!; STARTED+=("$flood_pid")
    sleep 1
  fi
  run_bounded "$wout" env TOKENS_FILE="$RESULTS_DIR/tokens.txt" timeout -k 5 "$KILL_AFTER" \
    wrk -t1 -c4 -d"${PHASE}s" --timeout 5s --latency -s "$BENCH/bearer.lua" "$GW/"
  [[ -n "$flood_pid" ]] && { wait "$flood_pid" 2>/dev/null || true; }
  g1=$(cpu_ticks "$GW_PID"); t1=$EPOCHREALTIME
  local -A w=() f=()
  local kv line
  line=$(grep -m1 '^RESULT ' "$wout") || { log "no RESULT from wrk in $phase (see $wout)"; return 0; }
  for kv in ${line#RESULT }; do w[${kv%%=*}]=${kv#*=}; done
  if [[ -n "$flood_pid" ]]; then
    line=$(grep -m1 '^RESULT ' "$fout") || { log "no RESULT from the flood in $phase (see $fout)"; line="RESULT"; }
    for kv in ${line#RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  fi
  local cpu
  cpu=$(awk -v t=$(( g1 - g0 )) -v k="$TCK" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", t/k/(b-a)*100}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "${w[rps]}" "${w[p50_us]}" \
    "${w[p99_us]}" "${w[non2xx]}" "${f[rps]:--}" "${f[s200]:--}" "${f[s401]:--}" \
    "${f[s429_throttle]:--}" "${f[s429_pool]:--}" "${f[errors]:--}" "$cpu" "${f[other]:--}" >>"$ROWS"
  log "$(printf '%-18s valid %7.0f req/s p50 %5s us p99 %6s us | flood %6s req/s 401 %s 429 %s+%s | gateway %s%%' \
    "$phase" "${w[rps]}" "${w[p50_us]}" "${w[p99_us]}" "${f[rps]:--}" "${f[s401]:--}" \
    "${f[s429_throttle]:--}" "${f[s429_pool]:--}" "$cpu")"
}

for phase in $PHASES; do
  log "phase $phase"
  run_phase "$phase"
done

TIMING=""
if (( TIMING_SAMPLES > 0 )); then
  log "timing probe: $TIMING_SAMPLES wrong passwords vs $TIMING_SAMPLES unknown users"
  run_bounded "$RESULTS_DIR/timing.out" timeout -k 5 120 python3 "$BENCH/auth_flood.py" timing \
    --port "$GW_PORT" --samples "$TIMING_SAMPLES" --sources "127.0.3.1-$(( 2 * TIMING_SAMPLES ))"
  TIMING=$(grep -m1 '^RESULT ' "$RESULTS_DIR/timing.out" || echo "RESULT (failed: see timing.out)")
fi

# ---------------------------------------------------------------- report
QUIET_P99=$(awk -F'\t' '$1=="quiet"{print $4}' "$ROWS")
{
  echo "# tokengate under failed-authentication floods"
  echo
  sed 's/^/    /' "$RESULTS_DIR/env.txt"
  echo
  echo "| phase | valid req/s | valid p50 µs | valid p99 µs | p99 vs quiet | valid non-2xx | flood req/s | flood 200 | flood 401 | flood 429 throttled | flood 429 pool full | flood errors | gateway CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' -v q="$QUIET_P99" '{r = (q > 0 && $4 > 0) ? sprintf("%.2f×", $4/q) : "—";
    printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, r, $5, $6, $7, $8, $9, $10, $11, $12}' "$ROWS"
  echo
  echo "Timing probe (sequential, one new connection per request, each from its own address):"
  echo
  echo "    ${TIMING#RESULT }"
} >"$RESULTS_DIR/summary.md"
cat "$RESULTS_DIR/summary.md"
kill -0 "$GW_PID" 2>/dev/null || log "WARNING: the gateway died during the run (see gateway.log)"
log "summary: $RESULTS_DIR/summary.md"
