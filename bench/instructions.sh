#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a repeatable A/B of the gateway's
# own work per request, where wall-clock runs on a shared 2-core VM move by ±15 %.
#
#   bash bench/instructions.sh                         # this tree's release build
#   bash bench/instructions.sh OLD_BIN [NEW_BIN]       # two builds side by side
#
# EXTRA_TOML='<toml>' adds configuration to every run (e.g. an access log, to measure its cost).
# KEEP_DIR=<dir> keeps the callgrind profiles (callgrind_annotate shows where the work is).
# For each build and scenario it runs the gateway under callgrind twice, with N1 and N2
# sequential keep-alive requests (h2load --h1 -c1), and reports (Ir(N2) - Ir(N1)) / (N2 - N1):
# start-up, token replay and shutdown cancel out. Scenarios (`SCENARIOS`): `get` (valid token,
# forwarded to a local nginx), `h2` (the same over one h2c connection, 4 streams at once; not in
# the default set), `deny` (wrong secret: the 401 path, with the per-address failure
# throttle lifted where the build has one) and `throttled` (the same with default limits: past
# the burst, the 429 path), and `rotate` (not in the default set: GET with the next of 100 valid
# tokens on every request, as load generators rotate them, so a connection's memo of its last
# token never helps; sent by bench/rotate_client.py, whose few headers differ from h2load's),
# and `rotate_deny` (not in the default set: the 401 with the next of 100 wrong secrets on
# every request, as the harness's deny row sends them: no memo, the fingerprint, the decoding),
# and `bulk` (not in the default set: a 4 KiB `_bulk` POST, as the harness's bulk row sends it:
# the body's way through hyper's channel to the node connection).
# 127.0.0.1 only; every process is started here and stopped by PID.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"
N1="${N1:-500}"
N2="${N2:-2500}"
SCENARIOS="${SCENARIOS:-get deny throttled}"
GW_PORT="${GW_PORT:-18180}"
UPSTREAM_PORT="${UPSTREAM_PORT:-19280}"
# This script's cleanup (it also removes the work directory), traps and wait_port, below, replace
# lib.sh's.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
# The result is (Ir(N2) - Ir(N1)) / (N2 - N1): N2 must exceed N1.
need_int N1 1 1000000
need_int N2 $((N1 + 1)) 10000000

for t in valgrind h2load nginx python3 curl; do
  command -v "$t" >/dev/null || die "$t missing (bash bench/install-deps.sh; apt-get install valgrind)"
done

BINS=("$@")
if ((${#BINS[@]} == 0)); then
  (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
  BINS=("$PROJECT/target/release/tokengate")
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-instr.XXXXXX")"
declare -a STARTED=()
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {  # port seconds
  local i
  for i in $(seq $(( $2 * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

mkdir -p "$WORK/up/logs" "$WORK/up/tmp"
cat >"$WORK/up/nginx.conf" <<EOF
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
$(nginx_temp_paths "$WORK/up")
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { default_type application/json; return 200 '{"name":"bench-node-1","tagline":"You Know, for Search"}'; }
    }
}
EOF
nginx -e stderr -p "$WORK/up/" -c "$WORK/up/nginx.conf" -g 'daemon off;' >"$WORK/up/out" 2>&1 &
STARTED+=("$!")
wait_port "$UPSTREAM_PORT" 10 || die "nginx did not start"

# 100 tokens of elastic/fleet-server, imported into a template data directory per build.
python3 - "$WORK/tokens.txt" <<'EOF'
import base64, os, sys
with open(sys.argv[1], "w") as out:
    for i in range(100):
        raw = b"\x00\x01\x00\x01" + f"elastic/fleet-server/instr-{i}:".encode() + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=")
        out.write(base64.b64encode(raw).decode().rstrip("=") + "\n")
EOF
VALID="$(head -1 "$WORK/tokens.txt")"
DENY="${VALID%?????}AAAAA"
# The same 100 tokens, each with a wrong secret: names that exist, as the harness's invalid ones.
sed 's/.....$/AAAAA/' "$WORK/tokens.txt" >"$WORK/deny-tokens.txt"
# A 4 KiB `_bulk` body: index actions and small documents, as the harness's bulk row sends.
python3 - "$WORK/bulk.ndjson" <<'EOF'
import sys
lines = []
i = 0
while sum(len(l) for l in lines) < 4096 - 120:
    lines.append('{"index":{"_index":"logs-bench"}}\n')
    lines.append('{"@timestamp":"2026-12-07T00:00:%02dZ","message":"bench line %d","level":"info"}\n' % (i % 60, i))
    i += 1
open(sys.argv[1], "w").write("".join(lines))
EOF

write_config() {  # data_dir [extra toml] -> config path
  cat >"$1.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "$1"
workers = 1
[upstream]
url = "http://127.0.0.1:$UPSTREAM_PORT"
[log]
level = "error"
[admin]
# Not measured, and a port of its own could clash with another gateway on this machine.
listen = ""
${2:-}
${EXTRA_TOML:-}
EOF
  echo "$1.toml"
}

# run BIN TOKEN N [extra toml] -> total Ir of the gateway process
run() {
  local bin=$1 token=$2 n=$3 dir out pid
  dir="$(mktemp -d "$WORK/data.XXXXXX")"
  ELASTIC_PASSWORD=instr-bench-pw "$bin" --config "$(write_config "$dir" "${4:-}")" tokens import "$WORK/tokens.txt" >/dev/null
  out="$dir.callgrind"
  ELASTIC_PASSWORD=instr-bench-pw valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$bin" --config "$dir.toml" >"$dir.log" 2>&1 &
  pid=$!; STARTED+=("$pid")
  wait_port "$GW_PORT" 120 || die "gateway did not start under valgrind (see $dir.log)"
  if [[ $token_label == rotate ]]; then
    python3 "$BENCH/rotate_client.py" "$GW_PORT" "$n" "$WORK/tokens.txt" >"$dir.h2load" 2>&1 \
      || die "the rotating client failed (see $dir.h2load)"
  elif [[ $token_label == rotate_deny ]]; then
    python3 "$BENCH/rotate_client.py" "$GW_PORT" "$n" "$WORK/deny-tokens.txt" 401 >"$dir.h2load" 2>&1 \
      || die "the rotating client failed (see $dir.h2load)"
  else
    local proto=(--h1) path=/
    [[ $token_label == h2 ]] && proto=(-m 4)  # h2c with prior knowledge, 4 streams at once
    [[ $token_label == bulk ]] && proto+=(-d "$WORK/bulk.ndjson" -H "content-type: application/x-ndjson") && path=/_bulk
    h2load "${proto[@]}" -n "$n" -c 1 -H "authorization: Bearer $token" "http://127.0.0.1:$GW_PORT$path" >"$dir.h2load" 2>&1 \
      || die "h2load failed (see $dir.h2load)"
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  [[ -n "${KEEP_DIR:-}" ]] && mkdir -p "$KEEP_DIR" && cp "$out" "$KEEP_DIR/$(basename "$bin").$n.$token_label.callgrind"
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

printf '| build | scenario | instructions per request |\n|---|---|---:|\n'
for bin in "${BINS[@]}"; do
  [[ -x "$bin" ]] || die "$bin is not an executable"
  for scenario in $SCENARIOS; do
    token=$VALID; [[ $scenario == deny || $scenario == throttled ]] && token=$DENY
    extra=""
    # The 401 path itself, with the per-address failure throttle out of the way (a build
    # without the throttle knows no such key and needs none).
    if [[ $scenario == deny || $scenario == rotate_deny ]] && grep -q failed_auth_burst "$bin"; then
      extra=$'[security]\nfailed_auth_burst = 1000000000\nfailed_auth_per_minute = 1000000000'
    fi
    token_label=$scenario
    a=$(run "$bin" "$token" "$N1" "$extra")
    b=$(run "$bin" "$token" "$N2" "$extra")
    printf '| %s | %s | %d |\n' "$bin" "$scenario" $(( (b - a) / (N2 - N1) ))
  done
done
