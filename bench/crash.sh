#!/usr/bin/env bash
# Crash test of the token journal, on 127.0.0.1 only: no acknowledged token may be lost to kill -9.
#
#   bash bench/crash.sh                   # 100 rounds
#   ROUNDS=3 bash bench/crash.sh
#
# Each round: concurrent token creates through the API (CLIENTS keep-alive clients as `elastic`),
# kill -9 of the gateway at a random moment, restart on the same data directory, then every token
# whose create was answered 200 in that round must authenticate (GET /_security/_authenticate,
# which the gateway answers itself, so no upstream is needed). After the last round every token of
# every round is checked once more. Prints one summary line; exit 1 if a token was lost.
# Stops what it started, by PID, on exit and on Ctrl-C.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
ROUNDS="${ROUNDS:-100}"
CLIENTS="${CLIENTS:-16}"              # parallel keep-alive create clients
KILL_MIN_MS="${KILL_MIN_MS:-100}"     # the kill comes this long after the clients start ...
KILL_MAX_MS="${KILL_MAX_MS:-1500}"    # ... at the latest this long
GW_PORT="${GW_PORT:-18180}"
GW_LOG="${GW_LOG:-warn}"              # gateway log filter (RUST_LOG)
BUILD="${BUILD:-1}"                   # 0: use the existing binary
KEEP="${KEEP:-0}"                     # 1: keep the work directory even when nothing was lost
TARGET="${CARGO_TARGET_DIR:-$PROJECT/target}"
GW_BIN="${TOKENGATE_BIN:-$TARGET/release/tokengate}"

# This script's cleanup (it may keep the work directory) and traps, below, replace lib.sh's.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int ROUNDS 1 10000
need_int CLIENTS 1 256
need_int KILL_MAX_MS 0 60000
need_int KILL_MIN_MS 0 "$KILL_MAX_MS"
CLIENT_SECONDS=$(( KILL_MAX_MS / 1000 + 30 ))   # bounds a round's clients if the kill never lands

for t in python3 timeout; do
  command -v "$t" >/dev/null || die "$t not found"
done
if (exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT") 2>/dev/null; then
  die "port $GW_PORT already in use (set GW_PORT)"
fi

# ---------------------------------------------------------------- build
if [[ "$BUILD" == 1 ]]; then
  log "cargo build --release"
  (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
fi
[[ -x "$GW_BIN" ]] || die "$GW_BIN missing (BUILD=1 builds it, TOKENGATE_BIN picks another)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-crash.XXXXXX")"
DATA="$WORK/data"
GW_OUT="$WORK/gateway.log"
ALL="$WORK/acknowledged.txt"
: >"$ALL"
PASSWORD="crash-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# ---------------------------------------------------------------- process control
GW_PID=""
CLIENT_PID=""
PASSED=0                              # set once every check came back clean
cleanup() {
  local pid
  for pid in "$CLIENT_PID" "$GW_PID"; do
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP" == 1 || "$PASSED" != 1 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

start_gateway() {
  ELASTIC_PASSWORD="$PASSWORD" RUST_LOG="$GW_LOG" \
    "$GW_BIN" --listen "127.0.0.1:$GW_PORT" --upstream "http://127.0.0.1:9" --data-dir "$DATA" \
    >>"$GW_OUT" 2>&1 &
  GW_PID=$!
  timeout 40 python3 "$BENCH/crash_client.py" wait --port "$GW_PORT" --password "$PASSWORD" \
    --seconds 30 || die "gateway did not come up (see $GW_OUT)"
}

# ---------------------------------------------------------------- rounds
log "work directory $WORK, $ROUNDS rounds, $CLIENTS clients, kill after ${KILL_MIN_MS}-${KILL_MAX_MS} ms"
acknowledged=0
checked=0
lost_total=0
start_gateway
for (( round = 1; round <= ROUNDS; round++ )); do
  acks="$WORK/round-$round.txt"
  : >"$acks"
  timeout $(( CLIENT_SECONDS + 15 )) python3 "$BENCH/crash_client.py" create --port "$GW_PORT" \
    --password "$PASSWORD" --prefix "r$round-" --out "$acks" --threads "$CLIENTS" \
    --seconds "$CLIENT_SECONDS" >"$WORK/round-$round.client" 2>&1 &
  CLIENT_PID=$!
  delay_ms=$(( KILL_MIN_MS + (RANDOM * 32768 + RANDOM) % (KILL_MAX_MS - KILL_MIN_MS + 1) ))
  sleep "$(printf '%d.%03d' $(( delay_ms / 1000 )) $(( delay_ms % 1000 )))"
  kill -KILL "$GW_PID" 2>/dev/null || die "round $round: the gateway was already gone (see $GW_OUT)"
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=""
  wait "$CLIENT_PID" || die "round $round: create client failed (see $WORK/round-$round.client)"
  CLIENT_PID=""
  n=$(wc -l <"$acks")
  acknowledged=$(( acknowledged + n ))
  cat "$acks" >>"$ALL"

  start_gateway
  result=0
  out=$(timeout 300 python3 "$BENCH/crash_client.py" check --port "$GW_PORT" --tokens "$acks") || result=$?
  (( result <= 1 )) || die "round $round: check failed: $out"
  checked=$(( checked + n ))
  lost=$(sed -n 's/^checked [0-9]* lost \([0-9]*\).*/\1/p' <<<"$out" | head -1)
  lost_total=$(( lost_total + lost ))
  log "round $round/$ROUNDS: killed after $delay_ms ms, $(head -1 "$WORK/round-$round.client"), $out"
done

# Every token of every round, after all the restarts.
result=0
out=$(timeout 600 python3 "$BENCH/crash_client.py" check --port "$GW_PORT" --tokens "$ALL") || result=$?
(( result <= 1 )) || die "final check failed: $out"
n=$(wc -l <"$ALL")
checked=$(( checked + n ))
lost=$(sed -n 's/^checked [0-9]* lost \([0-9]*\).*/\1/p' <<<"$out" | head -1)
lost_total=$(( lost_total + lost ))
log "final check of all $n acknowledged tokens: $out"
torn=$(grep -c 'torn tail' "$GW_OUT" || true)

echo "crash: rounds=$ROUNDS creates_acknowledged=$acknowledged tokens_checked=$checked lost=$lost_total torn_tails_dropped=$torn"
(( lost_total == 0 )) || exit 1
(( acknowledged > 0 )) || die "no create was acknowledged before a kill: nothing was tested (raise KILL_MIN_MS)"
PASSED=1
