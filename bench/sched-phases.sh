#!/usr/bin/env bash
# How a proxy and its upstream share the core they are pinned to, while a load runs: records
# the scheduler's context switches on that core for a few seconds and prints, for each of the
# two, its short runs (ping-pong: one request, then switched out) and its long runs (batches),
# with bench/sched_phases.py. Starts no server and no load: it watches a run already under way
# (the harness's rows pin proxy and upstream to one core; run it during a long row, e.g.
# `DURATION=30 SCENARIOS=bulk_http bash bench/compare.sh`), and stops by itself.
#
#   bash bench/sched-phases.sh PROXY_PID UPSTREAM_PID [SECONDS]
#
# PROXY_PID and UPSTREAM_PID are the processes doing the work (nginx: the worker, not the
# master). Needs perf with access to the sched tracepoints (root, or perf_event_paranoid <= 1).
# Also reports each one's context switches per second from /proc over the same seconds.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

(( $# == 2 || $# == 3 )) || { sed -n '2,14p' "$0" >&2; exit 2; }
PROXY=$1 UPSTREAM=$2 SECONDS_TRACED=${3:-2}
need_int PROXY 1 4194304
need_int UPSTREAM 1 4194304
need_int SECONDS_TRACED 1 30
for pid in "$PROXY" "$UPSTREAM"; do kill -0 "$pid" 2>/dev/null || die "no process $pid"; done
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"

# The core the proxy runs on: where it was last scheduled (field 39 of /proc/PID/stat).
core_of() { cut -d')' -f2 "/proc/$1/stat" | awk '{print $37}'; }
CORE=$(core_of "$PROXY")
[[ "$(core_of "$UPSTREAM")" == "$CORE" ]] \
  || log "proxy on cpu$CORE, upstream on cpu$(core_of "$UPSTREAM"): not sharing a core; runs are still split"

switches() {  # pid -> voluntary nonvoluntary, summed over its threads
  awk '/^voluntary_ctxt_switches/{v+=$2} /^nonvoluntary_ctxt_switches/{n+=$2} END{print v, n}' \
    /proc/"$1"/task/*/status
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-sched.XXXXXX")"
cleanup_work() { rm -rf "$WORK"; cleanup; }
trap cleanup_work EXIT

read -r pv0 pn0 <<<"$(switches "$PROXY")"
read -r uv0 un0 <<<"$(switches "$UPSTREAM")"
perf record -q -e sched:sched_switch -C "$CORE" -o "$WORK/sched.data" -- sleep "$SECONDS_TRACED" \
  >"$WORK/perf.log" 2>&1 || die "perf record failed: $(tail -2 "$WORK/perf.log")"
read -r pv1 pn1 <<<"$(switches "$PROXY")"
read -r uv1 un1 <<<"$(switches "$UPSTREAM")"
perf script -i "$WORK/sched.data" -F time,event,trace >"$WORK/sched.txt" 2>/dev/null

echo "cpu$CORE, proxy $PROXY ($(cat /proc/"$PROXY"/comm)), upstream $UPSTREAM ($(cat /proc/"$UPSTREAM"/comm))"
awk -v s="$SECONDS_TRACED" -v pv=$((pv1 - pv0)) -v pn=$((pn1 - pn0)) -v uv=$((uv1 - uv0)) -v un=$((un1 - un0)) \
  'BEGIN { printf "context switches/s: proxy %.0f voluntary, %.0f preempted; upstream %.0f voluntary, %.0f preempted\n", pv/s, pn/s, uv/s, un/s }'
python3 "$BENCH/sched_phases.py" "$WORK/sched.txt" "$PROXY" "$UPSTREAM"
