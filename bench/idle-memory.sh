#!/usr/bin/env bash
# Resident memory per idle keep-alive connection, and what is given back after they close:
# tokengate vs. nginx and HAProxy as bearer-token-checking reverse proxies, HTTP and TLS 1.3,
# on 127.0.0.0/8 only.
#
#   bash bench/idle-memory.sh                                  # 4,000 connections, 60 s after close
#   CONNS=2000 AFTER_CLOSE=20 bash bench/idle-memory.sh
#   TARGETS="tokengate nginx" TRANSPORTS=tls bash bench/idle-memory.sh
#   MODE=deny bash bench/idle-memory.sh                        # a wrong token: every answer a 401
#   TOKENGATE_BIN=/path/to/other/tokengate bash bench/idle-memory.sh   # measure another build
#
# Starts nginx as a stand-in Elasticsearch (GET / answers a small JSON body), creates one
# service token through tokengate's API as `elastic`, and makes a self-signed EC P-256 CA and
# server certificate for 127.0.0.1. Then for each target and transport it starts the target
# afresh (nginx: worker_processes 1, the worker's RSS; HAProxy: one process, nbthread 1;
# tokengate: TG_WORKERS runtime threads, 0 = one per core) and bench/idle_memory.py:
#   - warms it up with 200 connections (one GET / each), closed again; RSS "before";
#   - opens CONNS keep-alive connections from 127.0.0.2..127.0.0.21, each sending ONE GET /
#     with the token and reading the 200, then idle; after 2 s, RSS "with";
#   - closes them and samples the RSS every second for AFTER_CLOSE seconds.
# RSS is VmRSS from /proc/PID/status. Every target keeps idle connections for 600 s.
# Prints a Markdown table (KB per idle connection = (with - before) / CONNS, KB = 1024 bytes;
# the RSS before, with the connections, AFTER_CLOSE s after the close, and that as % of
# before); everything lands in bench/results/idle-memory-<UTC timestamp>/ (configs, logs,
# per-run RSS samples, summary.md). Stops what it started, by PID, on exit and on Ctrl-C.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"

# ---------------------------------------------------------------- knobs
TARGETS="${TARGETS:-tokengate nginx haproxy}"
TRANSPORTS="${TRANSPORTS:-http tls}"
CONNS="${CONNS:-4000}"                # idle keep-alive connections held per run
AFTER_CLOSE="${AFTER_CLOSE:-60}"      # seconds of RSS samples after they close
MODE="${MODE:-allow}"                 # allow: a valid token (200); deny: a wrong one (401)
WARMUP="${WARMUP:-200}"               # warm-up connections, closed before "before"
TG_WORKERS="${TG_WORKERS:-0}"         # tokengate's runtime threads; 0 = one per core
PORT_BASE="${PORT_BASE:-18700}"       # ports PORT_BASE .. PORT_BASE+6
GW_LOG="${GW_LOG:-warn}"
BUILD="${BUILD:-1}"                   # without TOKENGATE_BIN: 0 uses the existing release build
RESULTS_DIR="${RESULTS_DIR:-$BENCH/results/idle-memory-$(date -u +%Y%m%dT%H%M%SZ)}"

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need_int CONNS 1 20000
need_int AFTER_CLOSE 0 300
need_int WARMUP 0 1000
need_int TG_WORKERS 0 256
need_int PORT_BASE 1024 65000
[[ $MODE == allow || $MODE == deny ]] || { echo "MODE must be allow or deny" >&2; exit 2; }
for t in $TARGETS; do [[ $t =~ ^(tokengate|nginx|haproxy)$ ]] || { echo "unknown target $t" >&2; exit 2; }; done
for t in $TRANSPORTS; do [[ $t =~ ^(http|tls)$ ]] || { echo "unknown transport $t" >&2; exit 2; }; done

UP_PORT=$PORT_BASE
declare -A PORT=(
  [tokengate-http]=$(( PORT_BASE + 1 )) [tokengate-tls]=$(( PORT_BASE + 2 ))
  [nginx-http]=$(( PORT_BASE + 3 ))     [nginx-tls]=$(( PORT_BASE + 4 ))
  [haproxy-http]=$(( PORT_BASE + 5 ))   [haproxy-tls]=$(( PORT_BASE + 6 ))
)
KEEPALIVE=600                          # seconds every target keeps an idle connection
SOURCES=$(seq -s, -f '127.0.0.%g' 2 21)

cleanup() {  # lib.sh's, but never stopped by an error half-way: every PID gets its stop
  set +e
  local i
  for (( i=${#STARTED[@]}-1; i>=0; i-- )); do stop_pid "${STARTED[$i]}"; done
  STARTED=()
}
stop_started() {  # pid: stop it now and forget it (its number may be reused later)
  local pid=$1 i
  stop_pid "$pid"
  for i in "${!STARTED[@]}"; do [[ ${STARTED[$i]} == "$pid" ]] && unset 'STARTED[i]'; done
  STARTED=("${STARTED[@]}")
}
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- checks
for t in curl nginx openssl python3 ss timeout; do
  command -v "$t" >/dev/null || die "$t not found (bash bench/install-deps.sh)"
done
if has_target haproxy; then command -v haproxy >/dev/null || die "haproxy not found (bash bench/install-deps.sh)"; fi
for p in "$UP_PORT" "${PORT[@]}"; do
  [[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]] || die "port $p already in use (PORT_BASE=...)"
done
# The client holds CONNS descriptors, and so does each target (nginx and HAProxy more while
# a request is proxied): all of them stay under the open-file limit, with 1000 to spare.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
(( CONNS + 1000 <= FDS )) || die "CONNS=$CONNS needs an open-file limit of $(( CONNS + 1000 )); it is $FDS (hard limit $(ulimit -Hn))"
# HAProxy refuses to start unless the limit covers two descriptors per maxconn (CONNS + 500).
if has_target haproxy && (( 2 * (CONNS + 500) + 100 > FDS )); then
  die "HAProxy needs an open-file limit of $(( 2 * (CONNS + 500) + 100 )) for CONNS=$CONNS (it is $FDS): lower CONNS or leave haproxy out of TARGETS"
fi

mkdir -p "$RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> $RESULTS_DIR"

# ---------------------------------------------------------------- certificates
make_certs() {  # dir: ca.crt, server.crt, server.key, server.pem (cert + key, for HAProxy)
  local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  mkdir -p "$d"
  openssl req -x509 "${ec[@]}" -nodes -days 30 -keyout "$d/ca.key" -out "$d/ca.crt" \
    -subj "/CN=idle-memory bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req "${ec[@]}" -nodes -keyout "$d/server.key" -out "$d/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  cat "$d/server.crt" "$d/server.key" >"$d/server.pem"
  rm -f "$d/server.csr" "$d/server.ext" "$d/ca.srl"
  chmod 600 "$d/ca.key" "$d/server.key" "$d/server.pem"
  openssl verify -CAfile "$d/ca.crt" "$d/server.crt" >/dev/null || die "certificate check failed"
}
CERTS="$RESULTS_DIR/certs"
make_certs "$CERTS"

# ---------------------------------------------------------------- upstream
nginx_dirs() { mkdir -p "$1/logs" "$1/tmp"; }
nginx_common() {  # dir: the http-block lines every nginx here shares
  cat <<EOF
    access_log off;
    server_tokens off;
    default_type application/json;
    keepalive_requests 1000000;
$(nginx_temp_paths "$1")
EOF
}
write_upstream_conf() {  # dir
  cat >"$1/nginx.conf" <<EOF
# Stand-in Elasticsearch for the idle-memory benchmark.
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
$(nginx_common "$1")
    keepalive_timeout ${KEEPALIVE}s;
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location = / { return 200 '{"name":"bench-node-1","tagline":"You Know, for Search"}'; }
        location / { return 404 '{"error":"not found","status":404}'; }
    }
}
EOF
}
start_nginx() {  # dir port -> PID (the master)
  nginx -e stderr -p "$1/" -c "$1/nginx.conf" -g 'daemon off;' >"$1/nginx.out" 2>&1 &
  PID=$!; STARTED+=("$PID")
  wait_port "$2" || die "nginx did not listen on $2 (see $1/nginx.out)"
}
UP_DIR="$RESULTS_DIR/upstream"
nginx_dirs "$UP_DIR"
write_upstream_conf "$UP_DIR"
start_nginx "$UP_DIR" "$UP_PORT"

# ---------------------------------------------------------------- tokengate
GW_DATA="$RESULTS_DIR/gateway-data"
PASSWORD="idle-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
write_tokengate_conf() {  # transport -> tokengate-<transport>.toml
  local f="$RESULTS_DIR/tokengate-$1.toml"
  cat >"$f" <<EOF
[server]
data_dir = "$GW_DATA"
max_connections = 20000
max_connections_per_ip = 20000
header_timeout = "${KEEPALIVE}s"
workers = $TG_WORKERS

[admin]
listen = ""
EOF
  if [[ $1 == tls ]]; then
    printf '\n[tls]\nlisten = "127.0.0.1:%s"\ncert = "%s"\nkey = "%s"\n' \
      "${PORT[tokengate-tls]}" "$CERTS/server.crt" "$CERTS/server.key" >>"$f"
  fi
  "$GW_BIN" check-config --config "$f" >"$RESULTS_DIR/check-config-$1.out" 2>&1 \
    || die "tokengate check-config rejects $f: $(tail -3 "$RESULTS_DIR/check-config-$1.out")"
}
start_tokengate() {  # transport [bootstrap] -> PID; the plain listener is always on (token API)
  local env=(RUST_LOG="$GW_LOG")
  if [[ ${2:-} == bootstrap ]]; then env+=(ELASTIC_PASSWORD="$PASSWORD"); fi
  env "${env[@]}" "$GW_BIN" --config "$RESULTS_DIR/tokengate-$1.toml" --listen "127.0.0.1:${PORT[tokengate-http]}" \
    --upstream "http://127.0.0.1:$UP_PORT" --data-dir "$GW_DATA" >>"$RESULTS_DIR/tokengate-$1.log" 2>&1 &
  PID=$!; STARTED+=("$PID")
  wait_port "${PORT[tokengate-$1]}" || die "tokengate did not listen (see tokengate-$1.log)"
}
create_token() {  # -> TOKEN, made through the API of a gateway started for it alone
  start_tokengate http bootstrap
  log "creating a token through the API as elastic"
  python3 "$BENCH/client.py" create-tokens --port "${PORT[tokengate-http]}" --password "$PASSWORD" \
    --count 1 --threads 1 --out "$RESULTS_DIR/tokens.txt" >&2
  TOKEN=$(head -1 "$RESULTS_DIR/tokens.txt")
  [[ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:${PORT[tokengate-http]}/")" == 200 ]] || die "the token is not accepted"
  stop_started "$PID"
}
if has_target tokengate; then
  gateway_binary "$RESULTS_DIR"
  mkdir -p "$GW_DATA"
  write_tokengate_conf http   # also the token's gateway
  if [[ " $TRANSPORTS " == *" tls "* ]]; then write_tokengate_conf tls; fi
  create_token
else  # the peers only need a map holding it: a token of the same shape
  TOKEN=$(printf 'elastic/fleet-server/idle:%s' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" | base64 -w0)
  echo "$TOKEN" >"$RESULTS_DIR/tokens.txt"
fi

# ---------------------------------------------------------------- peers
# Both check "Authorization: Bearer <token>" against a map of valid tokens (here: the one
# token), answer 401 otherwise, drop the header and forward with upstream keep-alive.
DENY_BODY='{"error":{"type":"security_exception","reason":"missing or invalid bearer token"},"status":401}'
nginx_listen() {  # transport port
  if [[ $1 == tls ]]; then
    printf '        listen 127.0.0.1:%s ssl http2 backlog=4096;\n' "$2"
    printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n' "$CERTS/server.crt" "$CERTS/server.key"
    printf '        ssl_protocols TLSv1.3;\n        ssl_session_cache shared:SSL:10m;\n'
  else
    printf '        listen 127.0.0.1:%s backlog=4096;\n' "$2"
  fi
}
write_nginx_peer() {  # transport: nginx-<transport>/nginx.conf
  local d="$RESULTS_DIR/nginx-$1"
  nginx_dirs "$d"
  cat >"$d/nginx.conf" <<EOF
# nginx as a bearer-token auth reverse proxy ($1), one worker.
worker_processes 1;
worker_rlimit_nofile $FDS;
pid logs/nginx.pid;
error_log logs/error.log warn;
# nginx closes idle keep-alive connections once fewer than 1/16 of these are free.
events { worker_connections $(( CONNS + CONNS / 15 + 1000 )); }
http {
$(nginx_common "$d")
    keepalive_timeout ${KEEPALIVE}s;
    client_max_body_size 16m;
    client_body_buffer_size 64k;
    # map keys match case-insensitively: the value is the exact header, compared again below.
    map_hash_max_size 65536;
    map_hash_bucket_size 512;
    map \$http_authorization \$bearer_expected {
        default "";
        "Bearer $TOKEN" "Bearer $TOKEN";
    }
    map \$status \$www_authenticate {
        401     'Bearer realm="bench"';
        default '';
    }
    upstream es {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }
    server {
$(nginx_listen "$1" "${PORT[nginx-$1]}")
        add_header WWW-Authenticate \$www_authenticate always;
        if (\$bearer_expected = "") { return 401 '$DENY_BODY'; }
        if (\$http_authorization != \$bearer_expected) { return 401 '$DENY_BODY'; }
        location / {
            proxy_pass http://es;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header Authorization "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
  nginx -t -q -e stderr -p "$d/" -c "$d/nginx.conf" 2>"$d/nginx-t.out" || die "nginx -t: $(cat "$d/nginx-t.out")"
}
write_haproxy_peer() {  # transport: haproxy-<transport>.cfg
  local f="$RESULTS_DIR/haproxy-$1.cfg" bind="bind 127.0.0.1:${PORT[haproxy-$1]} backlog 4096"
  [[ $1 == tls ]] && bind+=" ssl crt $CERTS/server.pem alpn h2,http/1.1"
  printf '%s 1\n' "$TOKEN" >"$RESULTS_DIR/haproxy-tokens.map"
  cat >"$f" <<EOF
# HAProxy as a bearer-token auth reverse proxy ($1), one process, one thread.
global
    nbthread 1
    maxconn $(( CONNS + 500 ))
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client ${KEEPALIVE}s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive ${KEEPALIVE}s
frontend bench
    $bind
    acl bearer_prefix req.fhdr(authorization) -m beg "Bearer "
    acl token_ok      req.fhdr(authorization),bytes(7),map_str($RESULTS_DIR/haproxy-tokens.map) -m found
    http-request deny status 401 content-type application/json string '$DENY_BODY' hdr WWW-Authenticate 'Bearer realm="bench"' unless bearer_prefix token_ok
    http-request del-header Authorization
    default_backend es
backend es
    http-reuse always
    server es1 127.0.0.1:$UP_PORT pool-max-conn 64
EOF
  haproxy -c -q -f "$f" >"$f.check" 2>&1 || die "haproxy -c: $(cat "$f.check")"
}
if has_target nginx; then for t in $TRANSPORTS; do write_nginx_peer "$t"; done; fi
if has_target haproxy; then for t in $TRANSPORTS; do write_haproxy_peer "$t"; done; fi

# ---------------------------------------------------------------- runs
# start_<target> transport -> PID (what was started, stopped after the run) and MPID (whose
# RSS is measured: the same, but nginx's single worker).
start_tokengate_target() { start_tokengate "$1"; MPID=$PID; }
start_haproxy_target() {
  haproxy -db -f "$RESULTS_DIR/haproxy-$1.cfg" >"$RESULTS_DIR/haproxy-$1.log" 2>&1 &
  PID=$!; STARTED+=("$PID"); MPID=$PID
  wait_port "${PORT[haproxy-$1]}" || die "haproxy did not listen (see haproxy-$1.log)"
}
start_nginx_target() {
  local i kids
  start_nginx "$RESULTS_DIR/nginx-$1" "${PORT[nginx-$1]}"
  for i in $(seq 100); do
    kids=$(ps -o pid= --ppid "$PID" | tr -d ' ')
    [[ -n $kids ]] && break
    sleep 0.1
  done
  [[ -n $kids && $kids != *$'\n'* ]] || die "nginx $PID: expected one worker, found '${kids//$'\n'/ }'"
  MPID=$kids
}

ROWS="$RESULTS_DIR/rows.tsv"
: >"$ROWS"
# field NAME LINE -> the value of NAME=... in a RESULT line
field() { local kv; for kv in $2; do [[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return; }; done; echo "-"; }

run_one() {  # target transport
  local name="$1-$2" tls=() res
  log "$name: starting"
  "start_$1_target" "$2"
  [[ $2 == tls ]] && tls=(--tls --ca "$CERTS/ca.crt")
  log "$name: measuring process $MPID; $CONNS connections, then ${AFTER_CLOSE}s after close"
  timeout -k 5 $(( AFTER_CLOSE + 300 )) python3 "$BENCH/idle_memory.py" --port "${PORT[$name]}" \
    --pid "$MPID" --token "$TOKEN" --conns "$CONNS" --sources "$SOURCES" --mode "$MODE" \
    --warmup "$WARMUP" --after-close "$AFTER_CLOSE" --samples "$RESULTS_DIR/$name.rss.tsv" \
    "${tls[@]}" >"$RESULTS_DIR/$name.out" || log "$name: the client failed (see $name.out)"
  kill -0 "$MPID" 2>/dev/null || log "WARNING: $name: the measured process is gone"
  stop_started "$PID"
  res=$(grep -m1 '^RESULT ' "$RESULTS_DIR/$name.out" || echo RESULT)
  log "$name: ${res#RESULT }"
  printf '%s\t%s\t%s\n' "$1" "$2" "$res" >>"$ROWS"
}
for target in $TARGETS; do
  for transport in $TRANSPORTS; do run_one "$target" "$transport"; done
done

# ---------------------------------------------------------------- report
row_md() {  # target transport RESULT-line -> a table row, or a note for a failed run
  local r=$3 f
  f=$(field per_conn_bytes "$r")
  [[ $f == - ]] && { echo "| $1 | $2 | $CONNS | run failed | | | | |"; return; }
  awk -v t="$1" -v tr="$2" -v n="$(field conns "$r")" -v b="$f" -v be="$(field before_kb "$r")" \
      -v w="$(field with_kb "$r")" -v e="$(field end_kb "$r")" -v p="$(field end_pct_of_before "$r")" \
    'BEGIN { printf "| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %s %% |\n", t, tr, n, b / 1024, be / 1024, w / 1024, e / 1024, p }'
}
run_notes() {  # target transport RESULT-line -> a line when not every connection was held
  local r=$3 ok open
  ok=$(field ok "$r"); open=$(field open_at_measure "$r")
  [[ $ok == "$CONNS" && $open == "$CONNS" ]] && return 0
  echo "- $1/$2: answered as expected $ok of $CONNS, open at the measurement $open ($(field outcomes "$r"))"
}
version_of() { "$@" 2>&1 | head -1 | sed -E 's/.*version:? ([a-z]+\/)?([^ ]+).*/\2/'; }
{
  echo "# Idle keep-alive connection memory"
  echo
  echo "    date_utc: $(date -u +%FT%TZ)"
  echo "    cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  if has_target tokengate; then
    echo "    tokengate: $("$GW_BIN" --version 2>/dev/null || echo '?') ($(cd "$PROJECT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), workers=$TG_WORKERS (0 = one per core)"
  fi
  echo "    nginx: nginx/$(version_of nginx -v) (worker_processes 1: the worker's RSS)"
  if has_target haproxy; then echo "    haproxy: HAProxy $(version_of haproxy -v) (one process, nbthread 1)"; fi
  echo "    mode: $MODE ($([[ $MODE == allow ]] && echo 'valid token, 200 from the upstream' || echo 'wrong token, 401')), one GET / per connection, then idle"
  echo "    connections: $CONNS from 20 addresses (127.0.0.2-21) after a warm-up of $WARMUP; TLS: $(grep -m1 -o 'tls=TLS[^ ]*' "$ROWS" | cut -d= -f2 || echo -)"
  echo
  echo "| target | transport | connections | KB per idle connection | RSS before (MB) | RSS with connections (MB) | RSS ${AFTER_CLOSE} s after close (MB) | after close, % of start |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  while IFS=$'\t' read -r t tr r; do row_md "$t" "$tr" "$r"; done <"$ROWS"
  echo
  echo "RSS is VmRSS; KB and MB are 1024-based. KB per idle connection = (RSS with - RSS before) / connections."
  notes=$(while IFS=$'\t' read -r t tr r; do run_notes "$t" "$tr" "$r"; done <"$ROWS")
  [[ -z $notes ]] || printf '\n%s\n' "$notes"
} >"$RESULTS_DIR/summary.md"
cat "$RESULTS_DIR/summary.md"
log "summary: $RESULTS_DIR/summary.md (RSS samples: <target>-<transport>.rss.tsv)"
