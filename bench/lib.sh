# Shared by the benchmark scripts (source it): logging, checking knobs, and stopping exactly the
# processes a script started, by PID, on exit or Ctrl-C. A script adds each PID it starts to
# STARTED.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# need_int NAME MIN MAX: unless the knob NAME holds a whole number in MIN..MAX, says so and exits
# 2, the scripts' status for a bad setting (a failed run exits 1). Leading zeros are refused: bash
# arithmetic further on would read 010 as octal 8, and 08 not at all.
need_int() {
  local name=$1 min=$2 max=$3 val=${!1-}
  if [[ ! $val =~ ^(0|[1-9][0-9]{0,17})$ ]] || (( val < min || val > max )); then
    echo "$name must be an integer in $min..$max (got '$val')" >&2
    exit 2
  fi
}

declare -a STARTED=()
stop_pid() {  # TERM, wait up to 15 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local i
  for (( i=${#STARTED[@]}-1; i>=0; i-- )); do stop_pid "${STARTED[$i]}"; done
  STARTED=()
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

wait_port() {  # port [seconds]
  local i
  for i in $(seq $(( ${2:-20} * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# The gateway to run: TOKENGATE_BIN, else this tree's release build (made first unless BUILD=0;
# PROJECT is the tree). Sets SRC_BIN, and GW_BIN to a private copy in directory $1: a shared
# target directory may be rebuilt by someone else mid-run.
gateway_binary() {
  if [[ -n "${TOKENGATE_BIN:-}" ]]; then
    SRC_BIN="$TOKENGATE_BIN"
  else
    if [[ "${BUILD:-1}" == 1 ]]; then
      log "cargo build --release"
      (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
    fi
    SRC_BIN="${CARGO_TARGET_DIR:-$PROJECT/target}/release/tokengate"
  fi
  [[ -x "$SRC_BIN" ]] || die "$SRC_BIN missing"
  GW_BIN="$1/tokengate"
  cp "$SRC_BIN" "$GW_BIN"
}

# nginx_temp_paths DIR: http-block lines for a stand-in nginx's temporary files, in DIR/tmp (DIR
# absolute; DIR/tmp must exist). nginx's built-in ones are under its compile-time prefix: not
# writable for a user, and shared with any other nginx on the machine.
nginx_temp_paths() {
  cat <<EOF
    client_body_temp_path "$1/tmp/body";
    proxy_temp_path "$1/tmp/proxy";
    fastcgi_temp_path "$1/tmp/fastcgi";
    uwsgi_temp_path "$1/tmp/uwsgi";
    scgi_temp_path "$1/tmp/scgi";
EOF
}
