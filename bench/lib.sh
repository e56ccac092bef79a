# Shared by the benchmark scripts (source it): logging, and stopping exactly the processes a
# script started, by PID, on exit or Ctrl-C. A script adds each PID it starts to STARTED.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

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
