#!/usr/bin/env bash
# Fairness between accounts on a contended node, on 127.0.0.1 only.
#
#   bash bench/fairness.sh                       # 4 runs, B for 15 s each; ~2 min after the build
#   DURATION=10 RUNS="alone fair" bash bench/fairness.sh
#   JITTER_MS=10 RUNS="alone fair" bash bench/fairness.sh   # service time 20 ms ± 10 ms
#   TOKENGATE_BIN=/path/to/tokengate BUILD=0 bash bench/fairness.sh
#
# One slow node (bench/fairness.py node: a fixed service time, SERVICE_MS = 20 ms per request,
# answers counted per X-Opaque-Id) behind the release gateway with `upstream.max_connections =
# SLOTS` (8): the node serves at most SLOTS / SERVICE_MS = 400 requests/s. Two accounts, tokens
# created through the API as `elastic`:
#   A  elastic/fleet-server  floods: h2load --h1 with FLOOD_CONNS (40) connections, closed loop,
#                            ten times its share of the slots (4 of 8)
#   B  elastic/kibana        steady: bench/fairness.py steady, B_RATE (50) requests/s, open loop
# Runs (RUNS):
#   alone  B only: the baseline
#   fifo   A floods while B runs, `upstream.fair_queue = false` (arrival order)
#   fair   the same with `upstream.fair_queue = true`
#   rate   the same, fair, and A limited to `rate = "A_RATE/s"` (100/s), `burst = A_BURST` (10)
# A starts WARMUP (2) s before B and ends 10 s after B's DURATION (15) s; the figures are taken
# over B's window: B's p50/p99 (from when each request was due), its answers by status, its mean
# wait for a slot (tokengate_account_slot_wait_seconds_total), A's admitted and refused requests per
# second from the gateway's /metrics (tokengate_account_requests_total and
# tokengate_account_limited_total deltas), and what the node served of each account.
# Targets: B's p99 within 1.5x of alone (fair), B never refused, A's admitted rate within ±5 % of
# A_RATE (rate). Prints a Markdown table; everything lands in bench/results/fairness-<UTC>/.
# Every process is started here and stopped by PID, also on Ctrl-C; each run is bounded.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
SERVICE_MS="${SERVICE_MS:-20}"
JITTER_MS="${JITTER_MS:-0}"             # service time ± this, uniformly (0: fixed)
SLOTS="${SLOTS:-8}"
FLOOD_CONNS="${FLOOD_CONNS:-40}"
B_RATE="${B_RATE:-50}"
A_RATE="${A_RATE:-100}"
A_BURST="${A_BURST:-10}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-2}"
RUNS="${RUNS:-alone fifo fair rate}"
GW_PORT="${GW_PORT:-18380}"
ADMIN_PORT="${ADMIN_PORT:-18381}"
NODE_PORT="${NODE_PORT:-19380}"
BUILD="${BUILD:-1}"
RESULTS_DIR="${RESULTS_DIR:-$BENCH/results/fairness-$(date -u +%Y%m%dT%H%M%SZ)}"

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int DURATION 3 120
need_int WARMUP 1 30
need_int FLOOD_CONNS 1 1000
need_int SLOTS 1 512
for r in $RUNS; do
  [[ $r =~ ^(alone|fifo|fair|rate)$ ]] || { echo "unknown run $r (alone fifo fair rate)" >&2; exit 2; }
done

for t in h2load python3 curl ss timeout; do
  command -v "$t" >/dev/null || die "$t not found (bash bench/install-deps.sh)"
done
for p in "$GW_PORT" "$ADMIN_PORT" "$NODE_PORT"; do
  [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] || die "port $p already in use"
done

mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> $RESULTS_DIR"

# ---------------------------------------------------------------- build
gateway_binary "$RESULTS_DIR"

# ---------------------------------------------------------------- the slow node
# A's flood outlasts B's run by FLOOD_MARGIN s, so that B's window, however late its client
# starts on a busy machine, lies inside the flood.
FLOOD_MARGIN=10
FLOOD_SECONDS=$(( WARMUP + DURATION + FLOOD_MARGIN ))
NODE_SECONDS=$(( (FLOOD_SECONDS + 60) * 5 + 60 ))   # it ends by itself after every run could have
python3 "$BENCH/fairness.py" node --port "$NODE_PORT" --service-ms "$SERVICE_MS" --jitter-ms "$JITTER_MS" \
  --seconds "$NODE_SECONDS" >"$RESULTS_DIR/node.out" 2>&1 &
STARTED+=("$!")
wait_port "$NODE_PORT" || die "the node did not listen (see node.out)"

snapshot() {  # prefix: the time, the gateway's /metrics and the node's counts, taken together
  date +%s.%N >"$1.time"
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1.metrics" || true
  curl -s --max-time 5 "http://127.0.0.1:$NODE_PORT/_bench/counts" >"$1.counts" || true
}

# ---------------------------------------------------------------- the gateway, per run
PASSWORD="fair-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
GW_DATA="$RESULTS_DIR/gateway-data"
mkdir -p "$GW_DATA"
A_ACCOUNT="elastic/fleet-server"
B_ACCOUNT="elastic/kibana"
GW_PID=""

start_gateway() {  # run
  local run=$1 fair=true limit=""
  [[ $run == fifo ]] && fair=false
  [[ $run == rate ]] && limit=$(printf '[[service_accounts]]\naccount = "%s"\nrate = "%s/s"\nburst = %s\n' \
    "$A_ACCOUNT" "$A_RATE" "$A_BURST")
  cat >"$RESULTS_DIR/$run.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "$GW_DATA"
[upstream]
url = "http://127.0.0.1:$NODE_PORT"
max_connections = $SLOTS
fair_queue = $fair
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[audit]
enabled = false
[log]
level = "warn"
$limit
EOF
  ELASTIC_PASSWORD="$PASSWORD" "$GW_BIN" --config "$RESULTS_DIR/$run.toml" \
    >"$RESULTS_DIR/$run.gateway.log" 2>&1 &
  GW_PID=$!; STARTED+=("$GW_PID")
  wait_port "$GW_PORT" 30 || die "gateway did not listen (see $run.gateway.log)"
  wait_port "$ADMIN_PORT" 10 || die "admin listener did not listen (see $run.gateway.log)"
}

create_token() {  # account name -> token value
  curl -s --max-time 10 -u "elastic:$PASSWORD" -X POST \
    "http://127.0.0.1:$GW_PORT/_security/service/$1/credential/token/$2" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['token']['value'])"
}

start_gateway setup
log "creating a token per account through the API as elastic"
A_TOKEN=$(create_token "$A_ACCOUNT" fair-a) || die "could not create A's token"
B_TOKEN=$(create_token "$B_ACCOUNT" fair-b) || die "could not create B's token"
for t in "$A_TOKEN" "$B_TOKEN"; do
  [[ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "Authorization: Bearer $t" \
    "http://127.0.0.1:$GW_PORT/bench/_search")" == 200 ]] || die "a token is not accepted"
done
stop_pid "$GW_PID"

# ---------------------------------------------------------------- runs
for run in $RUNS; do
  start_gateway "$run"
  flood_pid=""
  if [[ $run != alone ]]; then
    timeout -k 5 $(( FLOOD_SECONDS + 30 )) h2load --h1 -c "$FLOOD_CONNS" -D "$FLOOD_SECONDS" \
      -H "authorization: Bearer $A_TOKEN" -H "x-opaque-id: A" \
      "http://127.0.0.1:$GW_PORT/bench/_search" >"$RESULTS_DIR/$run.flood.out" 2>&1 &
    flood_pid=$!; STARTED+=("$flood_pid")
    log "$run: A floods with $FLOOD_CONNS connections; B starts in ${WARMUP}s"
    sleep "$WARMUP"
  fi
  snapshot "$RESULTS_DIR/$run.t0"
  log "$run: B sends $B_RATE requests/s for ${DURATION}s"
  timeout -k 5 $(( DURATION + 30 )) python3 "$BENCH/fairness.py" steady --port "$GW_PORT" \
    --token "$B_TOKEN" --rate "$B_RATE" --seconds "$DURATION" >"$RESULTS_DIR/$run.steady.out" 2>&1 || true
  snapshot "$RESULTS_DIR/$run.t1"
  if [[ -n "$flood_pid" ]]; then
    kill -0 "$flood_pid" 2>/dev/null || log "WARNING: $run: A's flood ended before B did"
    wait "$flood_pid" || true
  fi
  stop_pid "$GW_PID"
  log "$run: $(grep -m1 '^RESULT ' "$RESULTS_DIR/$run.steady.out" || echo 'no result from B')"
done

# ---------------------------------------------------------------- table
python3 "$BENCH/fairness.py" summary --results "$RESULTS_DIR" --runs "$RUNS" --a-rate "$A_RATE" \
  --slots "$SLOTS" --service-ms "$SERVICE_MS" --jitter-ms "$JITTER_MS" --account "$A_ACCOUNT" \
  --b-account "$B_ACCOUNT" >"$RESULTS_DIR/summary.md"
cat "$RESULTS_DIR/summary.md"
