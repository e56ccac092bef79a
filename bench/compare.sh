#!/usr/bin/env bash
# Runs an external bearer-token proxy benchmark harness (nginx / HAProxy / Caddy
# doing the same job) with tokengate plugged in as its candidate.
#
#   HARNESS_DIR=/path/to/harness bash bench/compare.sh
#   HARNESS_DIR=/path/to/harness PEERS=nginx DURATION=5 bash bench/compare.sh
#   TOKENGATE_BIN=/path/to/other/tokengate HARNESS_DIR=... bash bench/compare.sh
#
# HARNESS_DIR (required) is the directory holding the harness's run.sh. It is
# driven through its candidate interface: CANDIDATE_CMD starts
# bench/candidate.sh, which imports the harness's tokens into a fresh data dir
# and execs the gateway on CANDIDATE_HTTP_PORT / CANDIDATE_HTTPS_PORT.
# Every other knob (PEERS, SCENARIOS, DURATION, WARMUP, REPEAT, ...) is passed
# through to the harness unchanged. The harness runs from a copy under
# bench/results/compare-<UTC>/ (it writes certificates, tokens and results into
# its own directory); the original is only read.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$BENCH/.." && pwd)"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -n "${HARNESS_DIR:-}" ]] || die "HARNESS_DIR is not set: point it at the directory of the harness's run.sh"
[[ -f "$HARNESS_DIR/run.sh" ]] || die "HARNESS_DIR=$HARNESS_DIR has no run.sh"
HARNESS_DIR="$(cd "$HARNESS_DIR" && pwd)"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH/results/compare-$STAMP"
mkdir -p "$OUT"

# TOKENGATE_BIN measures another build (e.g. the previous commit's) instead of this tree's.
if [[ -n "${TOKENGATE_BIN:-}" ]]; then
  GW_BIN="$TOKENGATE_BIN"
else
  if [[ "${BUILD:-1}" == 1 ]]; then
    log "cargo build --release"
    (cd "$PROJECT" && cargo build --release --quiet) || die "build failed"
  fi
  GW_BIN="$PROJECT/target/release/tokengate"
fi
[[ -x "$GW_BIN" ]] || die "$GW_BIN missing"
"$GW_BIN" tokens import --help >/dev/null 2>&1 || die "this tokengate has no 'tokens import' command"

# The harness writes into its own directory (certs/, tokens/, run/, results/):
# run a private copy so the original stays untouched (and may be read-only).
mkdir -p "$OUT/harness"
for f in "$HARNESS_DIR"/* "$HARNESS_DIR"/.[!.]*; do
  [[ -e "$f" ]] || continue
  case "$(basename "$f")" in results|run|.git) continue ;; esac
  cp -r "$f" "$OUT/harness/"
done
chmod -R u+w "$OUT/harness"
HARNESS_DIR="$OUT/harness"

export TOKENGATE_BIN="$GW_BIN"
export TOKENGATE_BENCH_WORK="$OUT/candidate"
export CANDIDATE_NAME="${CANDIDATE_NAME:-tokengate}"
export CANDIDATE_CMD="bash $(printf '%q' "$BENCH/candidate.sh")"
export CANDIDATE_HTTP_PORT="${CANDIDATE_HTTP_PORT:-8090}"
export CANDIDATE_HTTPS_PORT="${CANDIDATE_HTTPS_PORT:-8453}"
export RESULTS_DIR="${RESULTS_DIR:-$OUT/harness-results}"

log "harness: $HARNESS_DIR (results -> ${RESULTS_DIR#$PROJECT/})"
rc=0
bash "$HARNESS_DIR/run.sh" || rc=$?
# The candidate's data directories (journal, users) are not results.
rm -rf "$TOKENGATE_BENCH_WORK"
(( rc == 0 )) || die "harness failed (exit $rc); its logs are in ${RESULTS_DIR#$PROJECT/}"
log "summary: ${RESULTS_DIR#$PROJECT/}/summary.md"
