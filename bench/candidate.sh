#!/usr/bin/env bash
# Starts tokengate as the candidate of an external proxy-benchmark harness (see
# bench/compare.sh). Reads the harness's variables:
#   BENCH_TOKENS_FILE  token values to accept, one per line (imported before start)
#   BENCH_UPSTREAM     host:port of the upstream (plain HTTP)
#   BENCH_HTTP_PORT    plain-HTTP port on 127.0.0.1 (optional)
#   BENCH_HTTPS_PORT   HTTPS port on 127.0.0.1 (optional), with BENCH_CERT / BENCH_KEY
# Makes a fresh data directory (under TOKENGATE_BENCH_WORK when set, else a new
# temporary directory), writes a configuration there, imports the tokens with
# `tokengate tokens import`, then execs the gateway in the foreground, so the
# harness's PID is the gateway's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GW_BIN="${TOKENGATE_BIN:-$HERE/../target/release/tokengate}"
: "${BENCH_TOKENS_FILE:?BENCH_TOKENS_FILE not set}"
: "${BENCH_UPSTREAM:?BENCH_UPSTREAM not set}"
[[ -n "${BENCH_HTTP_PORT:-}${BENCH_HTTPS_PORT:-}" ]] || { echo "candidate: neither BENCH_HTTP_PORT nor BENCH_HTTPS_PORT set" >&2; exit 2; }
[[ -x "$GW_BIN" ]] || { echo "candidate: $GW_BIN missing (cargo build --release)" >&2; exit 2; }

if [[ -n "${TOKENGATE_BENCH_WORK:-}" ]]; then
  mkdir -p "$TOKENGATE_BENCH_WORK"
  WORK="$(mktemp -d "$TOKENGATE_BENCH_WORK/candidate.XXXXXX")"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-candidate.XXXXXX")"
fi

toml_str() {  # a TOML basic string
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

CONF="$WORK/tokengate.toml"
{
  echo "[server]"
  if [[ -n "${BENCH_HTTP_PORT:-}" ]]; then
    echo "listen = $(toml_str "127.0.0.1:$BENCH_HTTP_PORT")"
  else
    echo 'listen = ""'
  fi
  echo "data_dir = $(toml_str "$WORK/data")"
  echo 'shutdown_grace = "2s"'
  echo
  echo "[upstream]"
  echo "url = $(toml_str "http://$BENCH_UPSTREAM")"
  if [[ -n "${BENCH_HTTPS_PORT:-}" ]]; then
    : "${BENCH_CERT:?BENCH_CERT not set}" "${BENCH_KEY:?BENCH_KEY not set}"
    echo
    echo "[tls]"
    echo "listen = $(toml_str "127.0.0.1:$BENCH_HTTPS_PORT")"
    echo "cert = $(toml_str "$BENCH_CERT")"
    echo "key = $(toml_str "$BENCH_KEY")"
  fi
  echo
  # The harness sends its invalid tokens from one address as fast as it can: tokengate would
  # throttle that address (429, cheaper than a 401). Lifted here so the deny rows measure the
  # 401 path, as the peers' do; bench/instructions.sh measures the 429 path separately.
  if grep -q failed_auth_burst "$GW_BIN"; then  # older builds have no throttle
    echo "[security]"
    echo "failed_auth_burst = 1000000000"
    echo "failed_auth_per_minute = 1000000000"
    echo
  fi
  echo "[log]"
  echo 'level = "warn"'
  # EXTRA_TOML: more configuration (e.g. an access log, or the audit log off), to measure
  # what a feature costs on the harness.
  if [[ -n "${EXTRA_TOML:-}" ]]; then
    echo
    printf '%s\n' "$EXTRA_TOML"
  fi
} >"$CONF"

echo "candidate: data and config in $WORK" >&2
# The elastic user is created on first start; nobody logs in during the benchmark.
export ELASTIC_PASSWORD="${ELASTIC_PASSWORD:-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
"$GW_BIN" --config "$CONF" tokens import "$BENCH_TOKENS_FILE" >&2
# EXTRA_TOKENS_FILE: more tokens in the store than the harness uses (e.g. 1,000,000), to see
# that the size of the set changes nothing.
if [[ -n "${EXTRA_TOKENS_FILE:-}" ]]; then
  "$GW_BIN" --config "$CONF" tokens import "$EXTRA_TOKENS_FILE" >&2
fi
exec "$GW_BIN" --config "$CONF"
