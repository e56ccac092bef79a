#!/usr/bin/env bash
# Installs the tools the benchmarks use (Debian/Ubuntu): wrk, nginx, h2load,
# HAProxy, curl, python3, taskset/ps/ss. Idempotent: when everything is
# already present it does nothing, not even `apt-get update`. Needs root (or sudo).
set -euo pipefail

# command -> Debian package providing it
declare -A PKG=(
  [wrk]=wrk
  [nginx]=nginx-light
  [h2load]=nghttp2-client
  [haproxy]=haproxy
  [curl]=curl
  [python3]=python3
  [taskset]=util-linux
  [ps]=procps
  [ss]=iproute2
  [openssl]=openssl
  [valgrind]=valgrind
)

missing=()
for cmd in "${!PKG[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG[$cmd]}")
done
if ((${#missing[@]} == 0)); then
  echo "bench deps: all present"
  exit 0
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "bench deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# Some releases ship only `nginx` (no nginx-light); fall back to it.
if ! apt-cache show nginx-light >/dev/null 2>&1; then
  missing=("${missing[@]/nginx-light/nginx}")
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  ca-certificates "${missing[@]}" >/dev/null

# Package install scripts may start system services; the benchmarks start
# their own instances and never use these. Stop them only under systemd.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  $SUDO systemctl stop nginx haproxy 2>/dev/null || true
fi

for cmd in "${!PKG[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "bench deps: $cmd still missing" >&2; exit 1; }
done
echo "bench deps: ok"
